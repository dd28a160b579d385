//go:build linux

package netlab

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// benchSpec is a lab of n hosts on four networks, shaped like the
// reference: most hosts on one network, every fifth also on the next.
func benchSpec(dir string, n int) Spec {
	var s Spec
	for i := range 4 {
		s.Networks = append(s.Networks, Network{Name: "net" + strconv.Itoa(i), Subnet: netip.MustParsePrefix(fmt.Sprintf("198.18.%d.0/24", i))})
	}
	for i := range n {
		h := HostSpec{Name: fmt.Sprintf("host%d", i), FQDN: fmt.Sprintf("host%d.choria.local", i), Root: filepath.Join(dir, "hosts", strconv.Itoa(i))}
		nets := []int{i % 4}
		if i%5 == 0 {
			nets = append(nets, (i+1)%4)
		}
		for _, k := range nets {
			h.Addresses = append(h.Addresses, Address{Network: "net" + strconv.Itoa(k), Addr: netip.AddrFrom4([4]byte{198, 18, byte(k), byte(10 + i)})})
		}
		s.Hosts = append(s.Hosts, h)
	}
	setHostsFiles(&s)
	return s
}

// BenchmarkUp brings labs up and down and reports, besides ns/op for Up,
// the time Close takes and the anchors' mean resident set.
func BenchmarkUp(b *testing.B) {
	requireLab(b)
	for _, n := range []int{10, 50} {
		b.Run(fmt.Sprintf("hosts=%d", n), func(b *testing.B) {
			dir := b.TempDir()
			var closing time.Duration
			var rss, anchors int
			for i := 0; b.Loop(); i++ {
				spec := benchSpec(filepath.Join(dir, strconv.Itoa(i)), n)
				l, err := Up(context.Background(), spec, nil)
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				for _, h := range l.Hosts() {
					rss += vmRSS(b, h.AnchorPID())
					anchors++
				}
				start := time.Now()
				if err := l.Close(); err != nil {
					b.Fatal(err)
				}
				closing += time.Since(start)
				b.StartTimer()
			}
			b.ReportMetric(float64(closing.Milliseconds())/float64(b.N), "close-ms/op")
			b.ReportMetric(float64(rss)/float64(anchors), "anchor-RSS-kB")
		})
	}
}

func vmRSS(tb testing.TB, pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return kb
		}
	}
	return 0
}
