//go:build linux

package netlab

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/reproducible-choria/deployment/topology"
)

// Network is one lab network: a Linux bridge inside the switch namespace.
type Network struct {
	Name   string
	Subnet netip.Prefix
}

// Bind is an extra bind mount applied inside a host's mount namespace.
// Source is resolved on the real host before any of the host's own mounts
// are made; Target is the path the host sees.
type Bind struct {
	Source, Target string
	ReadOnly       bool
}

// Address puts a host on a network: one veth, named eth0, eth1… in the
// order of HostSpec.Addresses.
type Address struct {
	Network string
	Addr    netip.Addr
}

// HostSpec describes one lab host.
type HostSpec struct {
	Name      string    // short name, unique ("broker", "server1")
	FQDN      string    // UTS hostname
	Addresses []Address // in interface order
	// Root is an absolute directory in the lab dir holding this host's
	// overlay upper/work dirs (see UpperDir), root/ (its /root) and tmp/
	// (its /tmp). It must not lie under /etc or /var: the overlays of those
	// would then contain their own upper dirs, which the kernel refuses.
	Root      string
	HostsFile []byte // content of /etc/hosts
	Binds     []Bind
}

// Spec is the whole lab.
type Spec struct {
	Networks []Network
	Hosts    []HostSpec
}

// ErrNotRoot is returned by Up (and Preflight) when not running as root.
var ErrNotRoot = errors.New("netlab: root is required to build the lab (network, UTS and mount namespaces, bridges, veths and overlay mounts); run it as root")

// overlaid are the directories every host gets as an overlay of the real
// one; private are those it gets as a bind of a directory under its Root.
var (
	overlaid = []string{"/etc", "/var"}
	private  = []string{"/root", "/tmp"}
)

// UpperDir is where the files a host writes under mountpoint ("/etc" or
// "/var") land on the real host: the overlay's upper directory.
func UpperDir(hostRoot, mountpoint string) string {
	return filepath.Join(hostRoot, "overlay", strings.Trim(mountpoint, "/"), "upper")
}

func workDir(hostRoot, mountpoint string) string {
	return filepath.Join(hostRoot, "overlay", strings.Trim(mountpoint, "/"), "work")
}

var fqdnRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$`)

// maxHosts and maxNetworks keep switch-side veth names ("h<host>n<net>")
// within IFNAMSIZ-1 = 15 characters.
const (
	maxHosts    = 9999
	maxNetworks = 999
)

// Validate checks a spec without touching the system.
func (s Spec) Validate() error {
	if len(s.Hosts) > maxHosts {
		return fmt.Errorf("netlab: %d hosts, at most %d", len(s.Hosts), maxHosts)
	}
	if len(s.Networks) > maxNetworks {
		return fmt.Errorf("netlab: %d networks, at most %d", len(s.Networks), maxNetworks)
	}
	nets := map[string]netip.Prefix{}
	for i, n := range s.Networks {
		if n.Name == "" {
			return fmt.Errorf("netlab: network %d has no name", i)
		}
		if _, dup := nets[n.Name]; dup {
			return fmt.Errorf("netlab: network %q defined twice", n.Name)
		}
		p := n.Subnet
		if !p.IsValid() || !p.Addr().Is4() {
			return fmt.Errorf("netlab: network %q: subnet %v is not an IPv4 prefix", n.Name, p)
		}
		if p != p.Masked() {
			return fmt.Errorf("netlab: network %q: subnet %v has host bits set (want %v)", n.Name, p, p.Masked())
		}
		if !topology.InLabRange(p) {
			return fmt.Errorf("netlab: network %q: subnet %v is outside the lab range %v", n.Name, p, topology.LabRange)
		}
		for other, q := range nets {
			if p.Overlaps(q) {
				return fmt.Errorf("netlab: networks %q (%v) and %q (%v) overlap", n.Name, p, other, q)
			}
		}
		nets[n.Name] = p
	}
	names := map[string]bool{}
	addrs := map[netip.Addr]string{}
	for i, h := range s.Hosts {
		if !topology.IsDNSLabel(h.Name) {
			return fmt.Errorf("netlab: host %d: name %q is not a lower-case DNS label", i, h.Name)
		}
		if names[h.Name] {
			return fmt.Errorf("netlab: host %q defined twice", h.Name)
		}
		names[h.Name] = true
		if len(h.FQDN) > 64 || !fqdnRE.MatchString(h.FQDN) {
			return fmt.Errorf("netlab: host %q: FQDN %q is not a valid hostname of at most 64 characters", h.Name, h.FQDN)
		}
		if err := checkRoot(h.Root); err != nil {
			return fmt.Errorf("netlab: host %q: %w", h.Name, err)
		}
		onNet := map[string]bool{}
		for _, a := range h.Addresses {
			p, ok := nets[a.Network]
			if !ok {
				return fmt.Errorf("netlab: host %q: unknown network %q", h.Name, a.Network)
			}
			if onNet[a.Network] {
				return fmt.Errorf("netlab: host %q: two addresses on network %q", h.Name, a.Network)
			}
			onNet[a.Network] = true
			if !p.Contains(a.Addr) || a.Addr == p.Addr() {
				return fmt.Errorf("netlab: host %q: address %v is not a host address of network %q (%v)", h.Name, a.Addr, a.Network, p)
			}
			if bits := p.Bits(); bits < 31 {
				if bcast := lastAddr(p); a.Addr == bcast {
					return fmt.Errorf("netlab: host %q: address %v is the broadcast address of network %q", h.Name, a.Addr, a.Network)
				}
			}
			if other, dup := addrs[a.Addr]; dup {
				return fmt.Errorf("netlab: host %q: address %v already used by host %q", h.Name, a.Addr, other)
			}
			addrs[a.Addr] = h.Name
		}
		for _, b := range h.Binds {
			if !filepath.IsAbs(b.Source) {
				return fmt.Errorf("netlab: host %q: bind source %q is not absolute", h.Name, b.Source)
			}
			if !filepath.IsAbs(b.Target) || filepath.Clean(b.Target) != b.Target || b.Target == "/" {
				return fmt.Errorf("netlab: host %q: bind target %q is not a clean absolute path below /", h.Name, b.Target)
			}
		}
	}
	return nil
}

func checkRoot(root string) error {
	if !filepath.IsAbs(root) || filepath.Clean(root) != root || root == "/" {
		return fmt.Errorf("root %q is not a clean absolute directory below /", root)
	}
	// overlayfs options are comma separated and lowerdir is colon
	// separated; the kernel has an escape syntax, but nobody needs it here.
	if strings.ContainsAny(root, ",:\\\n") {
		return fmt.Errorf("root %q contains one of , : \\ or a newline, which overlay mount options cannot carry", root)
	}
	for _, d := range overlaid {
		if within(root, d) {
			return fmt.Errorf("root %q lies under %s, which the host sees as an overlay whose upper dir would be inside its own lower dir", root, d)
		}
	}
	return nil
}

// within reports whether p is dir or below it (lexically).
func within(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, dir+"/")
}

func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Addr().As4()
	hostBits := 32 - p.Bits()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v |= (1 << hostBits) - 1
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// Preflight reports, in one error, what this machine lacks to build a lab:
// root, overlayfs, nsenter. Up checks root itself; callers (and tests) use
// Preflight to fail or skip early with one clear message.
func Preflight() error {
	if os.Geteuid() != 0 {
		return ErrNotRoot
	}
	var missing []string
	if !overlayAvailable() {
		missing = append(missing, "overlayfs (kernel module overlay)")
	}
	if _, err := exec.LookPath("nsenter"); err != nil {
		missing = append(missing, "nsenter (util-linux) on PATH")
	}
	if len(missing) > 0 {
		return fmt.Errorf("netlab: this machine lacks %s", strings.Join(missing, " and "))
	}
	return nil
}

func overlayAvailable() bool {
	if b, err := os.ReadFile("/proc/filesystems"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.TrimSpace(strings.TrimPrefix(l, "nodev")) == "overlay" {
				return true
			}
		}
	}
	// Not loaded yet: the first overlay mount loads the module if it exists.
	rel, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return false
	}
	m, _ := filepath.Glob(filepath.Join("/lib/modules", strings.TrimSpace(string(rel)), "kernel/fs/overlayfs/overlay.ko*"))
	return len(m) > 0
}
