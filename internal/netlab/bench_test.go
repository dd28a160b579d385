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
// the time Close takes and the anchors' mean memory. Iterations follow each
// other closely, so the kernel may still be freeing the previous lab's
// namespaces while the next one comes up, as with `choria-lab down; up`.
func BenchmarkUp(b *testing.B) {
	requireLab(b)
	for _, n := range []int{10, 50} {
		b.Run(fmt.Sprintf("hosts=%d", n), func(b *testing.B) {
			dir := b.TempDir()
			var closing time.Duration
			var rss, pss, anchors int
			for i := 0; b.Loop(); i++ {
				spec := benchSpec(filepath.Join(dir, strconv.Itoa(i)), n)
				l, err := Up(context.Background(), spec, nil)
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				for _, h := range l.Hosts() {
					rss += procKB(b, h.AnchorPID(), "status", "VmRSS:")
					pss += procKB(b, h.AnchorPID(), "smaps_rollup", "Pss:")
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
			// RSS counts the binary's pages shared by all anchors; PSS
			// splits them, so it is what each anchor really costs.
			b.ReportMetric(float64(rss)/float64(anchors), "anchor-RSS-kB")
			b.ReportMetric(float64(pss)/float64(anchors), "anchor-PSS-kB")
		})
	}
}

// procKB reads a "Field:   N kB" line of /proc/PID/file.
func procKB(tb testing.TB, pid int, file, field string) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, file))
	if err != nil {
		tb.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field); ok {
			kb, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return kb
		}
	}
	tb.Fatalf("no %s in /proc/%d/%s", field, pid, file)
	return 0
}
