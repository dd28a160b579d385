//go:build linux

package netlab

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/reproducible-choria/deployment/internal/testenv"
)

func TestValidate(t *testing.T) {
	if err := refSpec("/lab").Validate(); err != nil {
		t.Fatalf("reference spec: %v", err)
	}
	if err := benchSpec("/lab", 60).Validate(); err != nil {
		t.Fatalf("60-host spec: %v", err)
	}
	cases := []struct {
		name, want string
		edit       func(*Spec)
	}{
		{"subnet outside the lab range", "outside the lab range", func(s *Spec) { s.Networks[0].Subnet = netip.MustParsePrefix("10.0.0.0/24") }},
		{"subnet wider than the range", "outside the lab range", func(s *Spec) { s.Networks[0].Subnet = netip.MustParsePrefix("198.16.0.0/14") }},
		{"host bits in subnet", "host bits", func(s *Spec) { s.Networks[0].Subnet = netip.MustParsePrefix("198.18.1.1/24") }},
		{"overlapping networks", "overlap", func(s *Spec) { s.Networks[1].Subnet = netip.MustParsePrefix("198.18.0.0/16") }},
		{"duplicate network", "defined twice", func(s *Spec) { s.Networks[1].Name = "A" }},
		{"unknown network", "unknown network", func(s *Spec) { s.Hosts[0].Addresses[0].Network = "Z" }},
		{"address outside its network", "not a host address", func(s *Spec) { s.Hosts[1].Addresses[0].Addr = netip.MustParseAddr("198.18.2.99") }},
		{"network address", "not a host address", func(s *Spec) { s.Hosts[1].Addresses[0].Addr = netip.MustParseAddr("198.18.1.0") }},
		{"broadcast address", "broadcast", func(s *Spec) { s.Hosts[1].Addresses[0].Addr = netip.MustParseAddr("198.18.1.255") }},
		{"duplicate address", "already used", func(s *Spec) { s.Hosts[1].Addresses[0].Addr = netip.MustParseAddr("198.18.1.10") }},
		{"two addresses on a network", "two addresses", func(s *Spec) {
			s.Hosts[1].Addresses = append(s.Hosts[1].Addresses, Address{Network: "A", Addr: netip.MustParseAddr("198.18.1.99")})
		}},
		{"duplicate host", "defined twice", func(s *Spec) { s.Hosts[1].Name = "broker" }},
		{"bad host name", "DNS label", func(s *Spec) { s.Hosts[1].Name = "Server_1" }},
		{"bad FQDN", "FQDN", func(s *Spec) { s.Hosts[1].FQDN = "a b" }},
		{"long FQDN", "FQDN", func(s *Spec) { s.Hosts[1].FQDN = strings.Repeat("a", 65) }},
		{"relative root", "root", func(s *Spec) { s.Hosts[1].Root = "lab/server1" }},
		{"root under /var", "under /var", func(s *Spec) { s.Hosts[1].Root = "/var/lib/lab/server1" }},
		{"root under /etc", "under /etc", func(s *Spec) { s.Hosts[1].Root = "/etc/lab/server1" }},
		{"root with a comma", "overlay mount options", func(s *Spec) { s.Hosts[1].Root = "/lab/a,b" }},
		{"relative bind source", "bind source", func(s *Spec) { s.Hosts[1].Binds = []Bind{{Source: "x", Target: "/etc/x"}} }},
		{"bind on /", "bind target", func(s *Spec) { s.Hosts[1].Binds = []Bind{{Source: "/x", Target: "/"}} }},
		{"unclean bind target", "bind target", func(s *Spec) { s.Hosts[1].Binds = []Bind{{Source: "/x", Target: "/etc/../x"}} }},
	}
	for _, c := range cases {
		s := refSpec("/lab")
		c.edit(&s)
		err := s.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error containing %q", c.name, err, c.want)
		}
	}
}

func TestLookupHosts(t *testing.T) {
	hosts := []byte("# comment\n127.0.0.1 localhost\n198.18.2.10  broker.choria.local broker # the broker\nbogus line\n198.18.2.11 Other\n")
	for name, want := range map[string]string{"broker": "198.18.2.10", "BROKER.choria.local": "198.18.2.10", "other": "198.18.2.11", "localhost": "127.0.0.1"} {
		if a, ok := lookupHosts(hosts, name); !ok || a.String() != want {
			t.Errorf("lookupHosts(%q) = %v, %v; want %s", name, a, ok, want)
		}
	}
	for _, name := range []string{"the", "comment", "bogus", "line"} {
		if a, ok := lookupHosts(hosts, name); ok {
			t.Errorf("lookupHosts(%q) = %v, want nothing", name, a)
		}
	}
}

func TestUpperDir(t *testing.T) {
	if got := UpperDir("/lab/hosts/broker", "/etc"); got != "/lab/hosts/broker/overlay/etc/upper" {
		t.Errorf("UpperDir = %q", got)
	}
}

func TestUpNeedsRoot(t *testing.T) {
	if os.Geteuid() == 0 {
		// the refusal needs an unprivileged process
		out := testenv.RunTestAsNobody(t, "TestUpNeedsRoot")
		if !strings.Contains(out, "--- PASS: TestUpNeedsRoot") {
			t.Errorf("as nobody:\n%s", out)
		}
		return
	}
	if _, err := Up(context.Background(), refSpec(t.TempDir()), nil); !errors.Is(err, ErrNotRoot) {
		t.Errorf("Up as non-root: %v, want ErrNotRoot", err)
	}
}
