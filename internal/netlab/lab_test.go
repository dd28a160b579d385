//go:build linux

package netlab

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/reproducible-choria/deployment/internal/poll"
	"github.com/reproducible-choria/deployment/internal/testenv"
	"github.com/vishvananda/netlink"
)

const echoPort = "7000"

// exchange dials addr from h and checks an echo round trip.
func exchange(h *Host, addr string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := h.DialContext(ctx, "tcp4", net.JoinHostPort(addr, echoPort))
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return err
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != "ping\n" {
		return errors.New("echo mismatch")
	}
	return nil
}

func TestIsolation(t *testing.T) {
	requireLab(t)
	before := snapshot(t)
	l := up(t, refSpec(t.TempDir()))
	before.check(t, "after Up")

	for _, h := range l.Hosts() {
		ln, err := h.Listen(context.Background(), "tcp4", ":"+echoPort)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go echo(ln)
	}

	cases := []struct {
		from, to string
		ok       bool
	}{
		{"client", "198.18.2.10", true},         // broker on B
		{"client", "broker.choria.local", true}, // through the client's hosts file
		{"client", "198.18.2.50", true},         // replicator on B
		{"client", "198.18.1.21", false},        // server1: only on A
		{"client", "198.18.1.10", false},        // broker's A address: no route, no forwarding
		{"server1", "198.18.1.10", true},        // broker on A
		{"server1", "198.18.2.30", false},       // client
		{"nats", "198.18.3.50", true},           // replicator on C
		{"nats", "198.18.2.50", false},          // replicator's B address
		{"nats", "198.18.2.10", false},          // broker
		{"nats", "198.18.1.21", false},          // server1
		{"nats", "198.18.2.30", false},          // client
		{"replicator", "198.18.2.10", true},     // broker on B
		{"replicator", "198.18.3.40", true},     // nats on C
		{"broker", "198.18.3.40", false},        // nats
		{"broker", "198.18.1.21", true},         // server1
		{"broker", "127.0.0.1", true},           // its own lo is up
	}
	for _, c := range cases {
		start := time.Now()
		err := exchange(host(t, l, c.from), c.to, 2*time.Second)
		switch {
		case c.ok && err != nil:
			t.Errorf("%s -> %s: %v, want a reply", c.from, c.to, err)
		case !c.ok && err == nil:
			t.Errorf("%s -> %s: got a reply, want none", c.from, c.to)
		case !c.ok && time.Since(start) > time.Second:
			t.Errorf("%s -> %s: took %v to fail, want an immediate failure", c.from, c.to, time.Since(start))
		}
	}
	// The switch side answers nothing either: the bridges have no address
	// (this one is on-link, so it waits for ARP: keep the timeout short).
	if err := exchange(host(t, l, "client"), "198.18.2.1", 300*time.Millisecond); err == nil {
		t.Errorf("client reached 198.18.2.1, which nothing should hold")
	}

	// No default route in any host, nor in the switch; no forwarding.
	check := func(who string, pid int, id nsID) {
		ns, err := openNetNS(pid, id)
		if err != nil {
			t.Fatal(err)
		}
		defer ns.Close()
		hd, err := ns.netlink()
		if err != nil {
			t.Fatal(err)
		}
		defer hd.Close()
		routes, err := hd.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: syscall.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range routes {
			if r.Dst == nil || r.Dst.IP.IsUnspecified() {
				t.Errorf("%s has a default route: %v", who, r)
			}
		}
	}
	for _, h := range l.Hosts() {
		check(h.Name(), h.AnchorPID(), h.anchor.net)
	}
	check("switch", l.SwitchPID(), l.sw.net)
	if ip, err := exec.LookPath("ip"); err == nil {
		b := host(t, l, "broker")
		if out := mustRun(t, b, ip, "route", "show", "default"); strings.TrimSpace(out) != "" {
			t.Errorf("broker: ip route show default: %q", out)
		}
		out := mustRun(t, b, ip, "-4", "-o", "addr", "show")
		for _, want := range []string{"eth0    inet 198.18.1.10/24", "eth1    inet 198.18.2.10/24", "lo    inet 127.0.0.1/8"} {
			if !strings.Contains(strings.Join(strings.Fields(out), "    "), strings.Join(strings.Fields(want), "    ")) {
				t.Errorf("broker: ip addr lacks %q:\n%s", want, out)
			}
		}
	}
	if out := mustRun(t, host(t, l, "broker"), testenv.RequireTool(t, "cat"), "/proc/sys/net/ipv4/ip_forward"); strings.TrimSpace(out) != "0" {
		t.Errorf("broker forwards packets: ip_forward=%q", out)
	}
	before.check(t, "during the lab")
}

// Disconnect cuts a host off every network as pulled cables would: new
// connections fail both ways, an open one hangs without closing, and after
// Reconnect it carries on as if nothing had happened.
func TestDisconnect(t *testing.T) {
	requireLab(t)
	l := up(t, refSpec(t.TempDir()))
	for _, name := range []string{"broker", "server1"} {
		ln, err := host(t, l, name).Listen(context.Background(), "tcp4", ":"+echoPort)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go echo(ln)
	}
	server1 := host(t, l, "server1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	open, err := server1.DialContext(ctx, "tcp4", "198.18.1.10:"+echoPort)
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	roundTrip := func(c net.Conn, within time.Duration) error {
		_ = c.SetDeadline(time.Now().Add(within))
		if _, err := c.Write([]byte("ping\n")); err != nil {
			return err
		}
		buf := make([]byte, 5)
		_, err := io.ReadFull(c, buf)
		return err
	}
	if err := roundTrip(open, 2*time.Second); err != nil {
		t.Fatalf("before: %v", err)
	}

	if err := l.Disconnect("broker"); err != nil {
		t.Fatal(err)
	}
	if err := exchange(server1, "198.18.1.10", time.Second); err == nil {
		t.Error("server1 reached the disconnected broker")
	}
	if err := exchange(host(t, l, "broker"), "198.18.1.21", time.Second); err == nil {
		t.Error("the disconnected broker reached server1")
	}
	if err := exchange(host(t, l, "client"), "198.18.2.10", time.Second); err == nil {
		t.Error("the client reached the disconnected broker on its other network")
	}
	var ne net.Error
	if err := roundTrip(open, time.Second); !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("an open connection to the disconnected broker: %v, want it to hang until its deadline", err)
	}

	if err := l.Reconnect("broker"); err != nil {
		t.Fatal(err)
	}
	if err := exchange(server1, "198.18.1.10", 5*time.Second); err != nil {
		t.Errorf("after Reconnect: %v", err)
	}
	if err := l.Disconnect("nosuchhost"); err == nil || !strings.Contains(err.Error(), `no host "nosuchhost"`) {
		t.Errorf("Disconnect of an unknown host: %v", err)
	}
}

func TestNameResolution(t *testing.T) {
	requireLab(t)
	dir := t.TempDir()
	spec := refSpec(dir)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// Our test binary inside the client, as a single-file read-only bind
	// into its private /tmp (the real /tmp, where go test keeps it, is not
	// visible there).
	spec.Hosts[2].Binds = []Bind{{Source: exe, Target: "/tmp/bin/netlab.test", ReadOnly: true}}
	l := up(t, spec)
	c := host(t, l, "client")

	if out := mustRun(t, c, testenv.RequireTool(t, "getent"), "hosts", "broker.choria.local"); !strings.HasPrefix(out, "198.18.2.10 ") {
		t.Errorf("getent hosts broker.choria.local = %q, want 198.18.2.10 (broker's address on B)", out)
	}
	if out := mustRun(t, c, testenv.RequireTool(t, "uname"), "-n"); strings.TrimSpace(out) != "client.choria.local" {
		t.Errorf("hostname in client = %q", out)
	}
	if out := mustRun(t, c, testenv.RequireTool(t, "cat"), "/etc/hostname"); out != "client.choria.local\n" {
		t.Errorf("/etc/hostname in client = %q", out)
	}
	cmd := c.Command(context.Background(), "/tmp/bin/netlab.test", "replicator.choria.local")
	cmd.Env = append(os.Environ(), helperEnv+"=resolve")
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "198.18.2.50" {
		t.Errorf("Go resolver in client: %q, %v; want 198.18.2.50", out, err)
	}
	if h, _ := os.Hostname(); h == "client.choria.local" {
		t.Errorf("the machine's hostname changed")
	}
}

func TestMounts(t *testing.T) {
	requireLab(t)
	dir := t.TempDir()
	shared := filepath.Join(dir, "shared")
	ro := filepath.Join(dir, "ro")
	for _, d := range []string{shared, ro} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(ro, "file"), []byte("from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	spec := refSpec(dir)
	spec.Hosts[0].Binds = []Bind{
		{Source: shared, Target: "/etc/choria/shared"},
		{Source: ro, Target: "/var/lib/choria/ro", ReadOnly: true},
	}
	before := snapshot(t)
	l := up(t, spec)
	before.check(t, "after Up")
	a, b := host(t, l, "broker"), host(t, l, "client")
	sh := testenv.RequireTool(t, "sh")

	// Before writing into /etc through a lab host, make sure it is one:
	// its own mount namespace, with overlays on /etc and /var.
	own, _ := os.Readlink("/proc/self/ns/mnt")
	if got := strings.TrimSpace(mustRun(t, a, testenv.RequireTool(t, "readlink"), "/proc/self/ns/mnt")); got == own || got == "" {
		t.Fatalf("broker's commands run in the machine's mount namespace %q", own)
	}
	mi := mustRun(t, a, testenv.RequireTool(t, "cat"), "/proc/self/mountinfo")
	for _, d := range []string{"/etc", "/var"} {
		if !mountedAs(mi, d, "overlay") {
			t.Fatalf("no overlay on %s in broker:\n%s", d, mi)
		}
	}

	tag := "netlab-test-" + strconv.Itoa(os.Getpid())
	paths := []string{"/etc/choria/" + tag, "/var/log/" + tag, "/tmp/" + tag}
	mustRun(t, a, sh, "-c", `set -e; mkdir -p /etc/choria; for p in "$@"; do echo "$p" > "$p"; done`, sh, paths[0], paths[1], paths[2])
	for _, p := range paths {
		if out, err := run(t, a, sh, "-c", `test -f "$1"`, sh, p); err != nil {
			t.Errorf("broker cannot read back %s: %v %s", p, err, out)
		}
		if out, err := run(t, b, sh, "-c", `test ! -e "$1"`, sh, p); err != nil {
			t.Errorf("client sees broker's %s: %v %s", p, err, out)
		}
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the machine sees broker's %s (stat: %v)", p, err)
			_ = os.Remove(p) // never leave it behind
		}
	}
	root := spec.Hosts[0].Root
	for p, want := range map[string]string{
		filepath.Join(UpperDir(root, "/etc"), "choria", tag): paths[0],
		filepath.Join(UpperDir(root, "/var"), "log", tag):    paths[1],
		filepath.Join(root, "tmp", tag):                      paths[2],
	} {
		if b, err := os.ReadFile(p); err != nil || string(b) != want+"\n" {
			t.Errorf("%s: %q, %v; want %q", p, b, err, want)
		}
	}

	// Binds: rw reaches the source, ro refuses writes but reads.
	mustRun(t, a, sh, "-c", "echo w > /etc/choria/shared/w")
	if b, err := os.ReadFile(filepath.Join(shared, "w")); err != nil || string(b) != "w\n" {
		t.Errorf("rw bind: source has %q, %v", b, err)
	}
	if out := mustRun(t, a, testenv.RequireTool(t, "cat"), "/var/lib/choria/ro/file"); out != "from the host\n" {
		t.Errorf("ro bind reads %q", out)
	}
	if out, err := run(t, a, sh, "-c", "echo x > /var/lib/choria/ro/new"); err == nil || !strings.Contains(out, "Read-only") {
		t.Errorf("writing into the read-only bind: %v %q, want a read-only error", err, out)
	}
	if _, err := os.Stat(filepath.Join(ro, "new")); err == nil {
		t.Errorf("the read-only bind let a write through")
	}
	// The client has neither bind.
	if out, err := run(t, b, sh, "-c", "test ! -e /etc/choria/shared/w && test ! -e /var/lib/choria/ro"); err != nil {
		t.Errorf("client sees broker's binds: %v %s", err, out)
	}
	before.check(t, "during the lab")
}

func TestTeardown(t *testing.T) {
	requireLab(t)
	before := snapshot(t)
	l := up(t, refSpec(t.TempDir()))
	ids := labIDs(l)
	if len(ids) != 6 {
		t.Fatalf("%d distinct namespaces, want 6 (5 hosts and the switch)", len(ids))
	}
	// Processes left in the lab, one of which has forked: Close ends them.
	sleep, sh := testenv.RequireTool(t, "sleep"), testenv.RequireTool(t, "sh")
	var cmds []*exec.Cmd
	for _, argv := range [][]string{{sleep, "600"}, {sh, "-c", sleep + " 600 & " + sleep + " 600"}} {
		cmd := host(t, l, "server1").Command(context.Background(), argv[0], argv[1:]...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	time.Sleep(50 * time.Millisecond) // let sh fork
	start := time.Now()
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	t.Logf("Close took %v", time.Since(start))
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	for _, a := range l.anchors() {
		select {
		case <-a.done:
		default:
			t.Errorf("anchor %s (%d) still running", a.name, a.pid())
		}
	}
	for _, cmd := range cmds {
		if err := cmd.Wait(); err == nil {
			t.Errorf("%v survived Close", cmd.Args)
		}
	}
	if pids := heldBy(ids); len(pids) > 0 {
		t.Errorf("processes %v still hold the lab's namespaces", pids)
	}
	before.check(t, "after Close")
}

func TestCrash(t *testing.T) {
	requireLab(t)
	before := snapshot(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=crash", dirEnv+"="+t.TempDir())
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	info := readCrashInfo(t, out)
	ids := map[nsID]bool{}
	for _, v := range info.IDs {
		ids[nsID{dev: v[0], ino: v[1], cookie: v[2]}] = true
	}
	if len(ids) != 6 {
		t.Fatalf("crash child's lab has %d namespaces, want 6", len(ids))
	}
	// 6 anchors and the sleep, once nsenter has entered the namespaces.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var held []int
	if err := poll.Until(ctx, 10*time.Millisecond, func() (bool, error) { held = heldBy(ids); return len(held) >= 7, nil }); err != nil {
		t.Fatalf("crash child's lab is held by %v, want 7 processes", held)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	start := time.Now()
	waitFree(t, ids, 5*time.Second)
	t.Logf("lab gone %v after SIGKILL", time.Since(start))
	if err := syscall.Kill(info.Sleep, 0); err == nil && inNamespaces(info.Sleep, ids) {
		t.Errorf("the lab's sleep (%d) survived", info.Sleep)
	}
	before.check(t, "after the crash")
}

func TestUpFailure(t *testing.T) {
	requireLab(t)
	before := snapshot(t)
	kids := children()
	dir := t.TempDir()
	spec := refSpec(dir)
	missing := filepath.Join(dir, "no-such-source")
	spec.Hosts[4].Binds = []Bind{{Source: missing, Target: "/etc/choria/plugins"}}
	var done []string
	l, err := Up(context.Background(), spec, func(h string) { done = append(done, h) })
	if err == nil {
		l.Close()
		t.Fatal("Up succeeded with a missing bind source")
	}
	t.Logf("Up: %v (completed before the failure: %v)", err, done)
	for _, want := range []string{`host "replicator"`, missing, "/etc/choria/plugins"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	if now := children(); len(now) != len(kids) {
		t.Errorf("children before Up %v, after its failure %v", kids, now)
	}
	before.check(t, "after a failed Up")

	// A target outside the host's own trees that does not exist is refused
	// rather than created on the machine.
	spec = refSpec(dir)
	spec.Hosts[1].Binds = []Bind{{Source: dir, Target: "/usr/netlab-no-such-dir"}}
	if _, err := Up(context.Background(), spec, nil); err == nil || !strings.Contains(err.Error(), "/usr/netlab-no-such-dir") {
		t.Errorf("bind on a missing target outside the host's trees: %v", err)
	}
	if _, err := os.Stat("/usr/netlab-no-such-dir"); err == nil {
		t.Errorf("Up created /usr/netlab-no-such-dir on the machine")
	}

	// A cancelled context fails Up and leaves nothing.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Up(ctx, refSpec(dir), nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Up with a cancelled context: %v", err)
	}
	if now := children(); len(now) != len(kids) {
		t.Errorf("children before %v, after cancelled Up %v", kids, now)
	}
	before.check(t, "after failed Ups")
}

// mountedAs reports whether mountinfo has fstype mounted on dir.
func mountedAs(mountinfo, dir, fstype string) bool {
	for _, l := range strings.Split(mountinfo, "\n") {
		pre, post, ok := strings.Cut(l, " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if ok && len(f) > 4 && len(g) > 0 && f[4] == dir && g[0] == fstype {
			return true
		}
	}
	return false
}
