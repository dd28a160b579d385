//go:build linux

package netlab

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// soNetnsCookie is SO_NETNS_COOKIE (Linux 5.14), missing from x/sys/unix.
const soNetnsCookie = 71

// nsID identifies a network namespace. Inode numbers of namespaces are
// reused as soon as a namespace is freed (and other labs may be created
// concurrently, as in `go test ./...`), so the 64-bit netns cookie, which
// the kernel never reuses, is part of it where the kernel has one.
type nsID struct {
	dev, ino uint64
	cookie   uint64 // 0 on kernels without SO_NETNS_COOKIE
}

func (id nsID) String() string { return fmt.Sprintf("net:[%d] cookie %d", id.ino, id.cookie) }

// nsHandle is an open network namespace file.
type nsHandle struct {
	fd int
	id nsID
}

func (n *nsHandle) Close() { unix.Close(n.fd) }

// openNetNSFile opens /proc/PID/ns/net and identifies it.
func openNetNSFile(pid int) (*nsHandle, error) {
	p := "/proc/" + strconv.Itoa(pid) + "/ns/net"
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", p, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("stat %s: %w", p, err)
	}
	n := &nsHandle{fd: fd, id: nsID{dev: st.Dev, ino: st.Ino}}
	if n.id.cookie, err = netnsCookie(fd); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return n, nil
}

// nsIDOf identifies the network namespace of process pid.
func nsIDOf(pid int) (nsID, error) {
	n, err := openNetNSFile(pid)
	if err != nil {
		return nsID{}, err
	}
	n.Close()
	return n.id, nil
}

// openNetNS opens the network namespace of pid and checks it is want: a
// dead anchor's PID may have been reused by an unrelated process.
func openNetNS(pid int, want nsID) (*nsHandle, error) {
	n, err := openNetNSFile(pid)
	if err != nil {
		return nil, fmt.Errorf("anchor %d is gone: %w", pid, err)
	}
	if n.id != want {
		n.Close()
		return nil, fmt.Errorf("anchor %d is gone: its PID now belongs to a process in %v, not %v", pid, n.id, want)
	}
	return n, nil
}

// do runs fn on an OS thread switched into the namespace. Sockets keep the
// namespace they were created in, so what fn opens may be used anywhere.
func (n *nsHandle) do(fn func() error) error { return inNetNS(n.fd, fn) }

// netlink opens a NETLINK_ROUTE handle inside the namespace.
func (n *nsHandle) netlink() (*netlink.Handle, error) {
	var h *netlink.Handle
	err := n.do(func() error {
		var err error
		h, err = netlink.NewHandle(unix.NETLINK_ROUTE)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("open netlink in %v: %w", n.id, err)
	}
	return h, nil
}

// inNetNS runs fn on a fresh goroutine locked to its OS thread, switched into
// the network namespace nsFD. If switching back fails the goroutine exits
// still locked, so the Go runtime discards the thread instead of letting
// other goroutines run in the wrong namespace.
func inNetNS(nsFD int, fn func() error) error {
	res := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			res <- fmt.Errorf("open own network namespace: %w", err)
			return
		}
		defer unix.Close(orig)
		if err := unix.Setns(nsFD, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			res <- fmt.Errorf("enter network namespace: %w", err)
			return
		}
		ferr := fn()
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			res <- errors.Join(ferr, fmt.Errorf("leave network namespace (thread discarded): %w", err))
			return // locked: the runtime ends this thread
		}
		runtime.UnlockOSThread()
		res <- ferr
	}()
	return <-res
}

// netnsCookie returns the namespace's cookie, 0 where the kernel has none.
func netnsCookie(nsFD int) (uint64, error) {
	var cookie uint64
	err := inNetNS(nsFD, func() error {
		s, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("socket for netns cookie: %w", err)
		}
		defer unix.Close(s)
		cookie, err = unix.GetsockoptUint64(s, unix.SOL_SOCKET, soNetnsCookie)
		if errors.Is(err, unix.ENOPROTOOPT) {
			cookie, err = 0, nil
		}
		return err
	})
	return cookie, err
}

// holders lists the processes, other than those in exclude, whose network
// namespace has the inode of one in ids. It is exact while the namespaces
// are pinned (by their anchors); otherwise confirm each with inNamespaces.
func holders(ids map[nsID]bool, exclude map[int]bool) []int {
	type devIno struct{ dev, ino uint64 }
	want := map[devIno]bool{}
	for id := range ids {
		want[devIno{id.dev, id.ino}] = true
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || exclude[pid] {
			continue
		}
		var st unix.Stat_t
		// Zombies and exited processes have no namespace left: skipped.
		if unix.Stat("/proc/"+e.Name()+"/ns/net", &st) != nil {
			continue
		}
		if want[devIno{st.Dev, st.Ino}] {
			pids = append(pids, pid)
		}
	}
	return pids
}

// inNamespaces reports whether pid is, by inode and cookie, in one of ids.
func inNamespaces(pid int, ids map[nsID]bool) bool {
	id, err := nsIDOf(pid)
	return err == nil && ids[id]
}

// killIfIn SIGKILLs pid if it is in one of ids. The process is pinned by a
// pidfd (os.FindProcess) before it is checked, so a PID reused in between is
// never signalled.
func killIfIn(pid int, ids map[nsID]bool) {
	p, err := os.FindProcess(pid)
	if err != nil {
		return
	}
	defer p.Release()
	if inNamespaces(pid, ids) {
		_ = p.Signal(unix.SIGKILL)
	}
}
