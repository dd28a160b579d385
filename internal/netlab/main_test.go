//go:build linux

package netlab

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/reproducible-choria/deployment/internal/poll"
	"github.com/reproducible-choria/deployment/internal/testenv"
	"github.com/vishvananda/netlink"
)

// Environment variables that turn the test binary into a stand-in process.
const (
	helperEnv = "NETLAB_TEST_HELPER" // "resolve" or "crash"
	dirEnv    = "NETLAB_TEST_DIR"
)

func TestMain(m *testing.M) {
	RunAnchorIfRequested()
	switch os.Getenv(helperEnv) {
	case "resolve":
		// Go's own resolver inside a lab host, reading its /etc/hosts.
		addrs, err := net.DefaultResolver.LookupHost(context.Background(), os.Args[len(os.Args)-1])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println(strings.Join(addrs, " "))
		os.Exit(0)
	case "crash":
		crashChild()
	}
	os.Exit(m.Run())
}

// requireLab skips, in one line, where a lab cannot be built.
func requireLab(tb testing.TB) {
	tb.Helper()
	if err := Preflight(); err != nil {
		testenv.Missing(tb, "lab test: %v", err)
	}
}

// refSpec mirrors the reference topology's shape: the client and the
// servers share only the broker, the NATS host shares only the replicator.
func refSpec(dir string) Spec {
	nets := []Network{
		{Name: "A", Subnet: netip.MustParsePrefix("198.18.1.0/24")},
		{Name: "B", Subnet: netip.MustParsePrefix("198.18.2.0/24")},
		{Name: "C", Subnet: netip.MustParsePrefix("198.18.3.0/24")},
	}
	type h struct {
		name  string
		addrs []Address
	}
	a := func(n, ip string) Address { return Address{Network: n, Addr: netip.MustParseAddr(ip)} }
	hosts := []h{
		{"broker", []Address{a("A", "198.18.1.10"), a("B", "198.18.2.10")}},
		{"server1", []Address{a("A", "198.18.1.21")}},
		{"client", []Address{a("B", "198.18.2.30")}},
		{"nats", []Address{a("C", "198.18.3.40")}},
		{"replicator", []Address{a("B", "198.18.2.50"), a("C", "198.18.3.50")}},
	}
	s := Spec{Networks: nets}
	for _, x := range hosts {
		s.Hosts = append(s.Hosts, HostSpec{Name: x.name, FQDN: x.name + ".choria.local", Addresses: x.addrs, Root: filepath.Join(dir, "hosts", x.name)})
	}
	setHostsFiles(&s)
	return s
}

// setHostsFiles gives every host an /etc/hosts naming every other host by
// an address it can reach (one on a network they share), as the lab does.
func setHostsFiles(s *Spec) {
	for i, h := range s.Hosts {
		var b bytes.Buffer
		b.WriteString("127.0.0.1 localhost\n::1 localhost ip6-localhost\n")
		mine := map[string]bool{}
		for _, a := range h.Addresses {
			mine[a.Network] = true
		}
		for _, o := range s.Hosts {
			if len(o.Addresses) == 0 {
				continue
			}
			addr := o.Addresses[0].Addr
			for _, a := range o.Addresses {
				if mine[a.Network] {
					addr = a.Addr
					break
				}
			}
			fmt.Fprintf(&b, "%s %s %s\n", addr, o.FQDN, o.Name)
		}
		s.Hosts[i].HostsFile = b.Bytes()
	}
}

func up(t *testing.T, spec Spec) *Lab {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := Up(ctx, spec, nil)
	if err != nil {
		t.Fatalf("Up: %v", err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

func host(t *testing.T, l *Lab, name string) *Host {
	t.Helper()
	h, ok := l.Host(name)
	if !ok {
		t.Fatalf("no host %q", name)
	}
	return h
}

// run runs argv inside h and returns its combined output.
func run(t *testing.T, h *Host, argv ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := h.Command(ctx, argv[0], argv[1:]...).CombinedOutput()
	return string(out), err
}

func mustRun(t *testing.T, h *Host, argv ...string) string {
	t.Helper()
	out, err := run(t, h, argv...)
	if err != nil {
		t.Fatalf("%s: %v: %v\n%s", h.Name(), argv, err, out)
	}
	return out
}

// machineState is what Up must leave alone in the caller's namespaces.
type machineState struct {
	links     []string
	mountinfo string
}

func snapshot(t *testing.T) machineState {
	t.Helper()
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatalf("list links: %v", err)
	}
	var names []string
	for _, l := range links {
		names = append(names, fmt.Sprintf("%s(%s)", l.Attrs().Name, l.Type()))
	}
	slices.Sort(names)
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	return machineState{links: names, mountinfo: string(mi)}
}

func (s machineState) check(t *testing.T, when string) {
	t.Helper()
	now := snapshot(t)
	if !slices.Equal(s.links, now.links) {
		t.Errorf("%s: the machine's links changed:\nbefore %v\nnow    %v", when, s.links, now.links)
	}
	if s.mountinfo != now.mountinfo {
		t.Errorf("%s: the machine's mount table changed:\nbefore\n%s\nnow\n%s", when, s.mountinfo, now.mountinfo)
	}
}

// labIDs are the namespaces of a lab, from its anchors.
func labIDs(l *Lab) map[nsID]bool {
	ids := map[nsID]bool{}
	for _, a := range l.anchors() {
		ids[a.net] = true
	}
	return ids
}

// heldBy lists the processes in one of ids, confirmed by cookie so a
// namespace inode reused by another lab does not count.
func heldBy(ids map[nsID]bool) []int {
	var pids []int
	for _, pid := range holders(ids, nil) {
		if inNamespaces(pid, ids) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// waitFree waits until no process is in ids.
func waitFree(t *testing.T, ids map[nsID]bool, within time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	var pids []int
	if err := poll.Until(ctx, 20*time.Millisecond, func() (bool, error) { pids = heldBy(ids); return len(pids) == 0, nil }); err != nil {
		t.Fatalf("processes %v still hold the lab's namespaces after %v", pids, within)
	}
}

// children lists our own child processes.
func children() []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	me := os.Getpid()
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(b, ')')
		f := strings.Fields(string(b[i+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(me) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// echo serves a line echo on ln until it is closed.
func echo(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			_, _ = io.Copy(c, c)
		}()
	}
}

// crashInfo is what the crash child reports before it is killed.
type crashInfo struct {
	IDs   [][3]uint64
	Sleep int
}

// crashChild is the test binary re-executed by TestCrash: it builds a lab,
// starts a process in it, reports, and waits to be SIGKILLed.
func crashChild() {
	l, err := Up(context.Background(), refSpec(os.Getenv(dirEnv)), nil)
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	h, _ := l.Host("client")
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	cmd := h.Command(context.Background(), sleep, "600")
	if err := cmd.Start(); err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	info := crashInfo{Sleep: cmd.Process.Pid}
	for id := range labIDs(l) {
		info.IDs = append(info.IDs, [3]uint64{id.dev, id.ino, id.cookie})
	}
	b, _ := json.Marshal(info)
	fmt.Println(string(b))
	select {}
}

func readCrashInfo(t *testing.T, r io.Reader) crashInfo {
	t.Helper()
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil {
		t.Fatalf("crash child: %v (%q)", err, line)
	}
	var info crashInfo
	if err := json.Unmarshal([]byte(line), &info); err != nil {
		t.Fatalf("crash child said %q", line)
	}
	return info
}
