//go:build linux

package netlab

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// anchorMarker is argv[1] of a re-executed anchor. It is the package's only
// global state: the anchor is our own binary started through /proc/self/exe,
// so nothing has to be installed for it.
const anchorMarker = "__netlab_anchor__"

const (
	modeHost   = "host"
	modeSwitch = "switch"
)

// statusFD is the anchor's end of the readiness pipe (ExtraFiles[0]).
const statusFD = 3

// anchorConfig is what the parent sends an anchor on its stdin, as one JSON
// value; stdin then stays open as the anchor's lifeline.
type anchorConfig struct {
	FQDN      string
	Root      string
	HostsFile []byte
	Binds     []Bind
}

// RunAnchorIfRequested must be the first thing main (and TestMain) does. In a
// process started by Up as an anchor it sets up the namespaces, reports
// readiness and holds them until the lab closes, then exits: it never
// returns. In any other process it returns at once.
func RunAnchorIfRequested() {
	if len(os.Args) < 3 || os.Args[1] != anchorMarker {
		return
	}
	status := os.NewFile(statusFD, "netlab-status")
	err := runAnchor(os.Args[2])
	if err != nil {
		fmt.Fprintf(status, "error: %v\n", err)
		os.Exit(1)
	}
	fmt.Fprintln(status, "ok")
	status.Close()
	if os.Args[2] == modeHost {
		// the first process of the host's PID namespace adopts its orphans
		go reapOrphans()
	}
	// Hold the namespaces until the parent closes our stdin (Close) or dies
	// (Pdeathsig SIGKILL); a switch anchor also ends on SIGTERM, a host
	// anchor (the first process of its PID namespace) only on SIGKILL.
	// The parent never writes after the config, so a read that returns
	// anything but an error is ignored.
	buf := make([]byte, 64)
	for {
		if _, err := os.Stdin.Read(buf); err != nil {
			os.Exit(0)
		}
	}
}

func runAnchor(mode string) error {
	switch mode {
	case modeSwitch:
		// The switch holds only bridges and switch-side veths: keep the
		// kernel from giving each port an IPv6 link-local address and
		// sending router solicitations and MLD reports around the lab.
		disableIPv6Default()
		return nil
	case modeHost:
		var c anchorConfig
		if err := json.NewDecoder(os.Stdin).Decode(&c); err != nil {
			return fmt.Errorf("read config: %w", err)
		}
		// The parent names the host in the error.
		return setupHost(c)
	default:
		return fmt.Errorf("unknown anchor mode %q", mode)
	}
}

// setupHost runs inside the anchor's fresh net, UTS and mount namespaces.
func setupHost(c anchorConfig) error {
	// First of all: our mount namespace is a copy of the host's, and shared
	// mounts in it still propagate to the host's. Cut that before mounting.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make all mounts private: %w", err)
	}
	if err := unix.Sethostname([]byte(c.FQDN)); err != nil {
		return fmt.Errorf("set hostname %q: %w", c.FQDN, err)
	}
	if err := loUp(); err != nil {
		return fmt.Errorf("bring lo up: %w", err)
	}
	// Only "default": veths added later get no IPv6 (the lab is IPv4),
	// while lo keeps ::1 for programs that resolve localhost to it.
	disableIPv6Default()

	if err := makeDirs(c.Root); err != nil {
		return err
	}
	// Open every bind source before the first mount: a source under /tmp,
	// /root, /etc or /var must mean the real host's, not what our own mounts
	// are about to put there. Mounting /proc/self/fd/N mounts that object.
	rootFD, err := openPath(filepath.Join(c.Root, "root"))
	if err != nil {
		return fmt.Errorf("mount /root: %w", err)
	}
	tmpFD, err := openPath(filepath.Join(c.Root, "tmp"))
	if err != nil {
		return fmt.Errorf("mount /tmp: %w", err)
	}
	bindFDs := make([]int, len(c.Binds))
	for i, b := range c.Binds {
		fd, err := openPath(b.Source)
		if err != nil {
			return fmt.Errorf("bind mount %s on %s: source: %w", b.Source, b.Target, err)
		}
		bindFDs[i] = fd
	}

	for _, d := range overlaid {
		// lowerdir is resolved before the overlay covers it, so the host
		// sees the real directory plus its own changes.
		opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", d, UpperDir(c.Root, d), workDir(c.Root, d))
		if err := unix.Mount("overlay", d, "overlay", 0, opts); err != nil {
			hint := ""
			if errors.Is(err, unix.EINVAL) {
				// The usual cause: an upper dir on overlayfs (a container's
				// root), NFS, or another filesystem without d_type or xattrs.
				hint = "; the lab directory must be on a filesystem overlayfs takes as upper layer (ext4, xfs, btrfs, tmpfs), not on overlayfs or NFS"
			}
			return fmt.Errorf("mount overlay on %s (%s): %w%s", d, opts, err, hint)
		}
	}
	// A sysfs mounted from inside the host's network namespace lists its
	// own interfaces; the inherited one lists the machine's, which do not
	// exist here (fact gatherers walking /sys/class/net then crash).
	if err := unix.Mount("sysfs", "/sys", "sysfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount sysfs on /sys: %w", err)
	}
	for _, m := range []struct {
		fd     int
		target string
	}{{rootFD, "/root"}, {tmpFD, "/tmp"}} {
		if err := unix.Mount(fdPath(m.fd), m.target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind mount %s on %s: %w", filepath.Join(c.Root, filepath.Base(m.target)), m.target, err)
		}
	}
	// /etc/hosts and /etc/hostname may be symlinks in the lower /etc (NixOS
	// points them into the store): replace them rather than write through.
	for name, content := range map[string][]byte{"/etc/hosts": c.HostsFile, "/etc/hostname": []byte(c.FQDN + "\n")} {
		if err := replaceFile(name, content); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}

	// Binds in the order given, so one may land inside another; read-only
	// remounts come last so a later target can still be created inside an
	// earlier read-only bind.
	var readOnly, bound []string
	for i, b := range c.Binds {
		if err := bindMount(bindFDs[i], b, bound); err != nil {
			return fmt.Errorf("bind mount %s on %s: %w", b.Source, b.Target, err)
		}
		bound = append(bound, b.Target)
		if b.ReadOnly {
			readOnly = append(readOnly, b.Target)
		}
	}
	for _, t := range readOnly {
		if err := remountReadOnly(t); err != nil {
			return fmt.Errorf("remount %s read-only: %w", t, err)
		}
	}
	for _, fd := range append(bindFDs, rootFD, tmpFD) {
		unix.Close(fd)
	}
	return nil
}

func makeDirs(root string) error {
	for _, d := range overlaid {
		for _, p := range []string{UpperDir(root, d), workDir(root, d)} {
			if err := os.MkdirAll(p, 0o755); err != nil {
				return fmt.Errorf("mount overlay on %s: %w", d, err)
			}
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "root"), 0o700); err != nil {
		return fmt.Errorf("mount /root: %w", err)
	}
	tmp := filepath.Join(root, "tmp")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return fmt.Errorf("mount /tmp: %w", err)
	}
	// /tmp is world-writable and sticky; MkdirAll is subject to the umask.
	if err := os.Chmod(tmp, fs.ModePerm|fs.ModeSticky); err != nil {
		return fmt.Errorf("mount /tmp: %w", err)
	}
	return nil
}

func openPath(p string) (int, error) {
	fd, err := unix.Open(p, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &fs.PathError{Op: "open", Path: p, Err: err}
	}
	return fd, nil
}

func fdPath(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }

func replaceFile(name string, content []byte) error {
	if err := os.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return os.WriteFile(name, content, 0o644)
}

func bindMount(srcFD int, b Bind, bound []string) error {
	var st unix.Stat_t
	if err := unix.Fstat(srcFD, &st); err != nil {
		return fmt.Errorf("stat source: %w", err)
	}
	isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
	if err := makeTarget(b.Target, isDir, bound); err != nil {
		return fmt.Errorf("create target: %w", err)
	}
	if err := unix.Mount(fdPath(srcFD), b.Target, "", unix.MS_BIND, ""); err != nil {
		return err
	}
	return nil
}

// makeTarget creates a missing bind target, but only where the host has its
// own copy of the tree (its overlays, its /root and /tmp, or an earlier bind
// target): anywhere else the directory would appear on the real host.
func makeTarget(target string, isDir bool, bound []string) error {
	if _, err := os.Lstat(target); err == nil {
		return nil
	}
	// Find the deepest existing ancestor and resolve its symlinks (/var/run
	// is a symlink to /run, which is the real host's).
	anc := filepath.Dir(target)
	for {
		if _, err := os.Lstat(anc); err == nil {
			break
		}
		anc = filepath.Dir(anc)
	}
	real, err := filepath.EvalSymlinks(anc)
	if err != nil {
		return err
	}
	if !ownTree(real, bound) {
		return fmt.Errorf("%s does not exist and %s is not in one of the host's own trees (%v %v); create it on the real host or bind into those", target, real, overlaid, private)
	}
	if isDir {
		return os.MkdirAll(target, 0o755)
	}
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	return f.Close()
}

// ownTree reports whether p is in a tree this host has a copy of: its
// overlays, its private /root and /tmp, or an earlier bind target.
func ownTree(p string, bound []string) bool {
	return slices.ContainsFunc(slices.Concat(overlaid, private, bound), func(d string) bool { return within(p, d) })
}

func remountReadOnly(target string) error {
	var sfs unix.Statfs_t
	if err := unix.Statfs(target, &sfs); err != nil {
		return err
	}
	// A bind remount replaces the per-mount flags: keep the source's.
	keep := uintptr(sfs.Flags) & (unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC | unix.MS_NOATIME | unix.MS_NODIRATIME | unix.MS_RELATIME)
	return unix.Mount("", target, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY|keep, "")
}

func loUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

// disableIPv6Default is best effort: a kernel without IPv6 has no such file.
func disableIPv6Default() {
	_ = os.WriteFile("/proc/sys/net/ipv6/conf/default/disable_ipv6", []byte("1"), 0o644)
}

// reapOrphans waits for the children the anchor adopts as the first
// process of its PID namespace, so no zombie stays behind.
func reapOrphans() {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGCHLD)
	for range sigs {
		for {
			pid, err := unix.Wait4(-1, nil, unix.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
