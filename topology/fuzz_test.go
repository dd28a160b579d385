package topology

import (
	"strings"
	"testing"
)

// FuzzParse: no topology file, however broken, reaches a panic, and one
// that parses is whole: every host has its role's paths and an address
// on a known network, and /etc/hosts can be made for it.
func FuzzParse(f *testing.F) {
	base := DefaultJSON()
	f.Add(base)
	f.Add([]byte(strings.Replace(string(base), `"subjects": ["choria.node_metadata.>"]`, `"subjects": []`, 1)))
	f.Add([]byte(strings.Replace(string(base), `"aaa_monitor": 8081`, `"aaa_monitor": 0`, 1)))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"servers": {"count": -1}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		topo, err := Parse(data, "fuzz.json")
		if err != nil {
			return
		}
		for _, h := range topo.AllHosts() {
			if _, ok := topo.Roles[h.Role]; !ok {
				t.Fatalf("host %s has role %q with no paths", h.Name, h.Role)
			}
			if len(h.SortedNetworks()) == 0 {
				t.Fatalf("host %s has no network", h.Name)
			}
			_ = topo.FQDN(h.Name)
		}
		if len(topo.Streams.Registration.Subjects) == 0 {
			t.Fatal("a topology without registration subjects parsed")
		}
	})
}
