// Package netlabtest brings up the smallest namespace lab, for tests that
// need a host but no upstream program.
package netlabtest

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/reproducible-choria/deployment/internal/netlab"
	"github.com/reproducible-choria/deployment/internal/testenv"
)

// OneHost brings up a lab of one host, "box", on one network, removed when
// the test ends. It needs root (skipped, or failed under CI=true, without)
// and a test binary that calls netlab.RunAnchorIfRequested in TestMain.
func OneHost(t testing.TB) *netlab.Host {
	t.Helper()
	testenv.RequireRoot(t)
	if err := netlab.Preflight(); err != nil {
		testenv.Missing(t, "%v", err)
	}
	spec := netlab.Spec{
		Networks: []netlab.Network{{Name: "net", Subnet: netip.MustParsePrefix("198.18.0.0/24")}},
		Hosts: []netlab.HostSpec{{
			Name: "box", FQDN: "box.lab.test", Root: filepath.Join(t.TempDir(), "ns"),
			Addresses: []netlab.Address{{Network: "net", Addr: netip.MustParseAddr("198.18.0.10")}},
			HostsFile: []byte("127.0.0.1 localhost\n"),
		}},
	}
	l, err := netlab.Up(context.Background(), spec, nil)
	if err != nil {
		t.Fatalf("bringing up a one-host lab: %v", err)
	}
	t.Cleanup(func() { _ = l.Close() })
	h, ok := l.Host("box")
	if !ok {
		t.Fatal("the one-host lab has no host box")
	}
	return h
}

// Main is the TestMain of a package whose tests bring labs up: the labs'
// namespaces are held by the test binary re-executed as their anchors.
func Main(m *testing.M) {
	netlab.RunAnchorIfRequested()
	os.Exit(m.Run())
}
