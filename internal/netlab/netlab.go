//go:build linux

// Package netlab builds a sealed virtual network of hosts out of Linux
// namespaces, leaving no global state on the machine: no named namespaces,
// no files under /run/netns, nothing in the host's network namespace or
// mount table.
//
// Every namespace is held by an anchor, a child process (our own binary
// re-executed, see RunAnchorIfRequested) created with new namespaces and
// Pdeathsig SIGKILL. When the caller dies, however it dies, the anchors die,
// and with them the namespaces, and so the veths, bridges and mounts they
// hold. Bridges live in a switch namespace of their own, hosts get a veth per
// network and no default route, and addresses come only from
// topology.LabRange, so nothing in a lab can reach or be reached from the
// machine's networks.
package netlab

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/reproducible-choria/deployment/internal/poll"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// readyTimeout bounds how long one anchor may take to set up its namespaces,
// so a hung mount cannot hang Up when ctx has no deadline.
const readyTimeout = 30 * time.Second

// Lab is a running lab. Close it.
type Lab struct {
	spec   Spec
	sw     *anchor
	hosts  []*Host
	byName map[string]*Host

	closeOnce sync.Once
	closeErr  error
}

// Host is one host of a running lab.
type Host struct {
	spec   HostSpec
	index  int
	anchor *anchor
}

// anchor is one namespace-holding child process.
type anchor struct {
	name     string
	cmd      *exec.Cmd
	lifeline *os.File // write end of the anchor's stdin
	status   *os.File // read end of the readiness pipe
	net      nsID     // its network namespace
	done     chan struct{}
}

// Up builds the lab described by spec: the switch namespace with a bridge per
// network, then every host concurrently (namespaces, mounts, veths and
// addresses). progress, if not nil, is called with a host's name once that
// host is complete, never concurrently. On any error, including ctx ending,
// Up tears down everything it built before returning.
func Up(ctx context.Context, spec Spec, progress func(host string)) (*Lab, error) {
	if os.Geteuid() != 0 {
		return nil, ErrNotRoot
	}
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	l := &Lab{spec: spec, byName: map[string]*Host{}}
	for i, hs := range spec.Hosts {
		h := &Host{spec: hs, index: i}
		l.hosts = append(l.hosts, h)
		l.byName[hs.Name] = h
	}
	ok := false
	defer func() {
		if !ok {
			_ = l.Close()
		}
	}()

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		errMu sync.Mutex
		errs  []error
	)
	// Once one part fails, the others are cancelled: their errors are
	// consequences and would only bury the cause.
	fail := func(err error) {
		if ctx.Err() != nil {
			return
		}
		errMu.Lock()
		errs = append(errs, err)
		errMu.Unlock()
		cancel(err)
	}

	// The switch and its bridges first, alone: started among the hosts'
	// anchors it would be ready only as late as the average host, and no
	// host can be wired before it.
	var wg sync.WaitGroup
	var swh *netlink.Handle // shared: netlink.Handle serialises its requests
	defer func() {
		if swh != nil {
			swh.Close()
		}
	}()
	a, err := startAnchor(ctx, "switch", modeSwitch, unix.CLONE_NEWNET, nil)
	l.sw = a
	if err != nil {
		return nil, fmt.Errorf("netlab: switch: %w", err)
	}
	if swh, err = a.netlink(); err != nil {
		return nil, fmt.Errorf("netlab: switch: %w", err)
	}
	bridges, err := makeBridges(swh, spec.Networks)
	if err != nil {
		return nil, fmt.Errorf("netlab: switch: %w", err)
	}

	var progressMu sync.Mutex
	for _, h := range l.hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cfg := anchorConfig{FQDN: h.spec.FQDN, Root: h.spec.Root, HostsFile: h.spec.HostsFile, Binds: h.spec.Binds}
			// CLONE_NEWPID: the anchor is the first process of the host's
			// PID namespace, so when it dies (with the caller, by
			// Pdeathsig) the kernel kills every process of the host, even
			// one that lost its own parent-death signal (go-choria's
			// restart execs from any thread, and a thread's is unset)
			a, err := startAnchor(ctx, h.spec.Name, modeHost, unix.CLONE_NEWNET|unix.CLONE_NEWUTS|unix.CLONE_NEWNS|unix.CLONE_NEWPID, &cfg)
			h.anchor = a
			if err != nil {
				fail(fmt.Errorf("netlab: host %q: %w", h.spec.Name, err))
				return
			}
			if err := wireHost(swh, bridges, h, spec.Networks); err != nil {
				fail(fmt.Errorf("netlab: host %q: %w", h.spec.Name, err))
				return
			}
			if progress != nil {
				progressMu.Lock()
				progress(h.spec.Name)
				progressMu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if err := context.Cause(ctx); err != nil {
		return nil, fmt.Errorf("netlab: up: %w", err)
	}
	ok = true
	return l, nil
}

// startAnchor starts one anchor and waits until it reports its namespaces
// ready. The anchor is returned even on error, so Close can reap it.
func startAnchor(ctx context.Context, name, mode string, cloneflags uintptr, cfg *anchorConfig) (*anchor, error) {
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("start anchor: %w", err)
	}
	statusR, statusW, err := os.Pipe()
	if err != nil {
		stdinR.Close()
		stdinW.Close()
		return nil, fmt.Errorf("start anchor: %w", err)
	}
	cmd := &exec.Cmd{
		// /proc/self/exe, not os.Executable(): it still works when the
		// binary has been replaced or deleted since we started.
		Path:  "/proc/self/exe",
		Args:  []string{"netlab-anchor " + name, anchorMarker, mode},
		Env:   []string{"GOMAXPROCS=1"}, // fewer runtime threads, less RSS
		Dir:   "/",                      // pin no directory of ours
		Stdin: stdinR,
		// Errors come back on the status pipe; stdout and stderr are
		// /dev/null so the anchor holds no pipe of the caller's.
		ExtraFiles: []*os.File{statusW},
		SysProcAttr: &syscall.SysProcAttr{
			Cloneflags: cloneflags,
			// Die with the caller, whatever kills it. Pdeathsig is tied to
			// the forking OS thread: Go only ends a thread when a goroutine
			// exits while locked to it, which this package does only after
			// a failed namespace restore, never on the anchors' path.
			Pdeathsig: syscall.SIGKILL,
			// Out of the terminal's process group: Ctrl-C goes to the
			// caller, which tears the lab down in order.
			Setpgid: true,
		},
	}
	err = cmd.Start()
	stdinR.Close()
	statusW.Close()
	if err != nil {
		stdinW.Close()
		statusR.Close()
		return nil, fmt.Errorf("start anchor %s: %w", cmd.Path, err)
	}
	a := &anchor{name: name, cmd: cmd, lifeline: stdinW, status: statusR, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(a.done)
	}()
	// The child was cloned into its namespaces: /proc/PID/ns/net is already
	// the new one. Record its identity while the anchor pins it.
	if a.net, err = nsIDOf(cmd.Process.Pid); err != nil {
		return a, fmt.Errorf("anchor %d: %w", cmd.Process.Pid, err)
	}
	if cfg != nil {
		// The anchor reads exactly one JSON value; a config bigger than the
		// pipe buffer is fine since the anchor reads while we write.
		if err := json.NewEncoder(stdinW).Encode(cfg); err != nil {
			return a, fmt.Errorf("send config to anchor: %w (%s)", err, a.exitReason())
		}
	}
	return a, a.waitReady(ctx)
}

func (a *anchor) waitReady(ctx context.Context) error {
	line := make(chan string, 1)
	go func() {
		// The anchor writes one line and closes; EOF without a line means
		// it died first.
		s, _ := bufio.NewReader(a.status).ReadString('\n')
		line <- s
	}()
	timer := time.NewTimer(readyTimeout)
	defer timer.Stop()
	select {
	case s := <-line:
		a.status.Close()
		s = strings.TrimSpace(s)
		switch {
		case s == "ok":
			return nil
		case strings.HasPrefix(s, "error: "):
			return errors.New(strings.TrimPrefix(s, "error: "))
		default:
			<-a.done
			return fmt.Errorf("anchor died before reporting ready (%s)", a.exitReason())
		}
	case <-timer.C:
		return fmt.Errorf("anchor not ready after %v", readyTimeout)
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

func (a *anchor) exitReason() string {
	select {
	case <-a.done:
		return a.cmd.ProcessState.String()
	default:
		return "still running"
	}
}

func (a *anchor) pid() int { return a.cmd.Process.Pid }

// openNS opens the anchor's network namespace and checks it is still the one
// recorded at start, which a reused PID would not give.
func (a *anchor) openNS() (*nsHandle, error) {
	return openNetNS(a.pid(), a.net)
}

// netlink opens a netlink handle in the anchor's network namespace.
func (a *anchor) netlink() (*netlink.Handle, error) {
	ns, err := a.openNS()
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	return ns.netlink()
}

// kill ends the anchor and waits for it: closing the lifeline lets it exit
// by itself, SIGKILL makes sure.
func (a *anchor) kill() {
	a.lifeline.Close()
	_ = a.cmd.Process.Signal(syscall.SIGKILL)
	<-a.done
	a.status.Close()
}

// makeBridges creates one bridge per network in the switch namespace,
// without addresses, up.
func makeBridges(hd *netlink.Handle, nets []Network) (map[string]int, error) {
	idx := map[string]int{}
	for i, n := range nets {
		la := netlink.NewLinkAttrs()
		la.Name = "br" + strconv.Itoa(i)
		la.Flags = net.FlagUp
		if err := hd.LinkAdd(&netlink.Bridge{LinkAttrs: la}); err != nil {
			return nil, fmt.Errorf("create bridge %s for network %q: %w", la.Name, n.Name, err)
		}
		br, err := hd.LinkByName(la.Name)
		if err != nil {
			return nil, fmt.Errorf("look up bridge %s for network %q: %w", la.Name, n.Name, err)
		}
		idx[n.Name] = br.Attrs().Index
	}
	return idx, nil
}

// wireHost creates the host's veths: the switch end "h<host>n<net>" on the
// network's bridge, the host end eth0, eth1… created directly in the host's
// namespace (so names never clash in the switch), addressed and up.
func wireHost(swh *netlink.Handle, bridges map[string]int, h *Host, nets []Network) error {
	hns, err := h.anchor.openNS()
	if err != nil {
		return err
	}
	defer hns.Close()
	hh, err := hns.netlink()
	if err != nil {
		return err
	}
	defer hh.Close()
	for i, a := range h.spec.Addresses {
		ifname := "eth" + strconv.Itoa(i)
		la := netlink.NewLinkAttrs()
		ni := slices.IndexFunc(nets, func(n Network) bool { return n.Name == a.Network })
		la.Name = switchEnd(h, nets, a.Network)
		la.MasterIndex = bridges[a.Network]
		la.Flags = net.FlagUp
		veth := &netlink.Veth{LinkAttrs: la, PeerName: ifname, PeerNamespace: netlink.NsFd(hns.fd)}
		if err := swh.LinkAdd(veth); err != nil {
			return fmt.Errorf("create veth %s/%s on network %q: %w", la.Name, ifname, a.Network, err)
		}
		link, err := hh.LinkByName(ifname)
		if err != nil {
			return fmt.Errorf("look up %s: %w", ifname, err)
		}
		bits := nets[ni].Subnet.Bits()
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: a.Addr.AsSlice(), Mask: net.CIDRMask(bits, 32)}}
		if err := hh.AddrAdd(link, addr); err != nil {
			return fmt.Errorf("add %v/%d to %s: %w", a.Addr, bits, ifname, err)
		}
		if err := hh.LinkSetUp(link); err != nil {
			return fmt.Errorf("set %s up: %w", ifname, err)
		}
	}
	return nil
}

// Disconnect cuts every network link of the host, as pulling its cables
// would: the switch ends of its veths go down, so nothing passes either
// way and its connections hang rather than close. Reconnect undoes it.
func (l *Lab) Disconnect(host string) error { return l.setLinks(host, false) }

// Reconnect brings a disconnected host's links back up.
func (l *Lab) Reconnect(host string) error { return l.setLinks(host, true) }

func (l *Lab) setLinks(host string, up bool) error {
	h, ok := l.byName[host]
	if !ok {
		return fmt.Errorf("netlab: no host %q", host)
	}
	swh, err := l.sw.netlink()
	if err != nil {
		return fmt.Errorf("netlab: switch: %w", err)
	}
	defer swh.Close()
	for _, a := range h.spec.Addresses {
		name := switchEnd(h, l.spec.Networks, a.Network)
		link, err := swh.LinkByName(name)
		if err != nil {
			return fmt.Errorf("netlab: host %q: look up %s: %w", host, name, err)
		}
		set, what := swh.LinkSetDown, "down"
		if up {
			set, what = swh.LinkSetUp, "up"
		}
		if err := set(link); err != nil {
			return fmt.Errorf("netlab: host %q: set %s %s: %w", host, name, what, err)
		}
	}
	return nil
}

// switchEnd is the name of the host's veth end on network's bridge.
func switchEnd(h *Host, nets []Network, network string) string {
	return fmt.Sprintf("h%dn%d", h.index, slices.IndexFunc(nets, func(n Network) bool { return n.Name == network }))
}

// Host returns the host named name.
func (l *Lab) Host(name string) (*Host, bool) {
	h, ok := l.byName[name]
	return h, ok
}

// Hosts returns the hosts in spec order.
func (l *Lab) Hosts() []*Host { return append([]*Host(nil), l.hosts...) }

// SwitchPID is the PID of the anchor holding the switch namespace, where the
// bridges and the switch ends of the veths live (for debugging:
// `nsenter --target PID --net ip link`).
func (l *Lab) SwitchPID() int {
	if l.sw == nil {
		return 0
	}
	return l.sw.pid()
}

// closeTimeout bounds the wait for stray processes to leave the lab.
const closeTimeout = 5 * time.Second

// Close ends the lab: it kills every process still inside a lab host (those
// started with Command and anything they started, and which a caller forgot),
// then the anchors, and waits for them. Once it returns without error no
// process is in the lab's namespaces, so the kernel frees them and their
// veths, bridges and mounts. Close is idempotent.
func (l *Lab) Close() error {
	l.closeOnce.Do(func() { l.closeErr = l.close() })
	return l.closeErr
}

func (l *Lab) close() error {
	anchors := l.anchors()
	ids := map[nsID]bool{}
	own := map[int]bool{}
	for _, a := range anchors {
		ids[a.net] = true
		own[a.pid()] = true
	}
	// Sweep before killing the anchors, which pin the namespaces. Each
	// candidate is still confirmed by cookie before it is signalled, as an
	// anchor that died early may have freed its namespace's inode number
	// for someone else's.
	var errs []error
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	var stray []int
	err := poll.Until(ctx, 10*time.Millisecond, func() (bool, error) {
		stray = slices.DeleteFunc(holders(ids, own), func(pid int) bool { return !inNamespaces(pid, ids) })
		for _, pid := range stray {
			killIfIn(pid, ids)
		}
		return len(stray) == 0, nil
	})
	if err != nil {
		errs = append(errs, fmt.Errorf("netlab: close: processes %v still in the lab after %v", stray, closeTimeout))
	}
	var wg sync.WaitGroup
	for _, a := range anchors {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.kill()
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (l *Lab) anchors() []*anchor {
	var as []*anchor
	if l.sw != nil {
		as = append(as, l.sw)
	}
	for _, h := range l.hosts {
		if h.anchor != nil {
			as = append(as, h.anchor)
		}
	}
	return as
}

// Name is the host's short name.
func (h *Host) Name() string { return h.spec.Name }

// Spec is the host's part of the lab spec.
func (h *Host) Spec() HostSpec { return h.spec }

// AnchorPID is the PID of the process holding the host's namespaces, for
// EnterCommand and nsenter.
func (h *Host) AnchorPID() int { return h.anchor.pid() }

// Command returns a command that runs name inside the host's network, UTS
// and mount namespaces, through `nsenter --target PID --net --uts --mount`.
// nsenter execs name, so the started process is the caller's direct child; it
// gets Pdeathsig SIGKILL (it dies with the caller) and its own process group
// (Ctrl-C reaches the caller only; kill -PGID ends what it started). name
// should be absolute: it is looked up with the caller's PATH in the host's
// mount namespace. The working directory is the host's /.
func (h *Host) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, nsenterPath(), nsenterArgs(h.AnchorPID(), append([]string{name}, args...))...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	return cmd
}

// EnterCommand returns a command that runs argv inside the lab host whose
// anchor is anchorPID, from a process other than the lab's owner (choria-lab
// shell and exec). It is left in the caller's process group and gets no
// Pdeathsig, so it can own the terminal.
func EnterCommand(anchorPID int, argv []string) *exec.Cmd {
	return exec.Command(nsenterPath(), nsenterArgs(anchorPID, argv)...)
}

// EnterCommandContext is EnterCommand for a command without a terminal,
// killed when ctx ends: with what it started, since nsenter forks the
// program into the host's PID namespace (the group goes, and its output
// is given up on after a second).
func EnterCommandContext(ctx context.Context, anchorPID int, argv []string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, nsenterPath(), nsenterArgs(anchorPID, argv)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	return cmd
}

func nsenterArgs(pid int, argv []string) []string {
	// --wd (no value) takes the anchor's working directory, the host's /.
	// Not --wd=/: nsenter opens that path before entering the mount
	// namespace, leaving the process in a directory outside its root, where
	// getcwd(2) answers "(unreachable)/" and Go's os.Getwd fails.
	// --pid: into the host's PID namespace; nsenter then forks, waits for
	// the program and exits as it does.
	return append([]string{"--target", strconv.Itoa(pid), "--net", "--uts", "--mount", "--pid", "--wd", "--"}, argv...)
}

func nsenterPath() string {
	if p, err := exec.LookPath("nsenter"); err == nil {
		return p
	}
	return "nsenter"
}

var _ io.Closer = (*Lab)(nil)
