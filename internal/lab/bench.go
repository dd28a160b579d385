package lab

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/reproducible-choria/deployment/internal/netlab"
	"github.com/reproducible-choria/deployment/topology"
)

// BenchResult is one fresh lab's bring-up, measured.
type BenchResult struct {
	Servers int
	Phases  PhaseTimes
	// Ping is from the start of Up until every server answered choria ping.
	Ping time.Duration
	// PerMinute is the provisioning rate: servers over the time from the
	// services being ready to the last server provisioned.
	PerMinute float64
	// PeakRSS in KiB (VmHWM) of the broker, the provisioner, one server and
	// this process, the lab's supervisor.
	PeakRSS map[string]uint64
}

// Bench brings up a fresh lab for each server count and measures it.
func Bench(ctx context.Context, o Options, counts []int) ([]BenchResult, error) {
	var results []BenchResult
	for _, n := range counts {
		o.Servers = n
		if o.Log != nil {
			o.Log.Info(fmt.Sprintf("bench: %d servers", n))
		}
		res, err := benchOne(ctx, o, n)
		if err != nil {
			return results, fmt.Errorf("benchmark with %d servers: %w", n, err)
		}
		results = append(results, *res)
	}
	return results, nil
}

func benchOne(ctx context.Context, o Options, n int) (*BenchResult, error) {
	start := time.Now()
	r, err := Up(ctx, o)
	if err != nil {
		return nil, err
	}
	defer r.Down()
	res := &BenchResult{Servers: n, Phases: r.Phases}
	st := r.State()
	pw, err := r.Plan.Layout.Credentials().UserPassword("choria")
	if err != nil {
		return nil, err
	}
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	_, err = Login(lctx, st, "client", "choria", pw)
	cancel()
	if err != nil {
		return nil, err
	}
	if err := waitPing(ctx, st, n, 2*time.Minute); err != nil {
		return nil, err
	}
	res.Ping = time.Since(start)
	provisioning := r.Phases.Provisioned - r.Phases.Services
	if provisioning > 0 {
		res.PerMinute = float64(n) / provisioning.Minutes()
	}
	res.PeakRSS = map[string]uint64{"supervisor": peakRSS(os.Getpid())}
	for _, s := range r.supervisor.Snapshots() {
		switch {
		case s.Name == "broker", s.Name == "provisioner":
			res.PeakRSS[s.Name] = peakRSS(s.PID)
		case s.Host == r.Plan.Topology.ServerName(1):
			res.PeakRSS["server"] = peakRSS(s.PID)
		}
	}
	return res, nil
}

var pingReplies = regexp.MustCompile(`(\d+) replies`)

// waitPing runs choria ping on the client until n servers answer.
func waitPing(ctx context.Context, st *State, n int, limit time.Duration) error {
	h, err := st.Host(topology.RoleClient)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(limit)
	last := ""
	for time.Now().Before(deadline) {
		// one ping is bounded by the wait's own limit and by ctx
		pctx, cancel := context.WithDeadline(ctx, deadline)
		cmd := netlab.EnterCommandContext(pctx, h.AnchorPID, []string{"choria", "ping"})
		cmd.Env = st.Env
		out, _ := cmd.CombinedOutput()
		cancel()
		last = string(out)
		if m := pingReplies.FindStringSubmatch(last); m != nil {
			if got, _ := strconv.Atoi(m[1]); got >= n {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("not all %d servers answered choria ping within %s; last output: %s", n, limit, lastLine(last))
}

// peakRSS reads a process's high-water resident set size in KiB.
func peakRSS(pid int) uint64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb
		}
	}
	return 0
}

// WriteBench prints the results as a table.
func WriteBench(w io.Writer, results []BenchResult) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "servers\tnetwork s\tbroker ready s\tall provisioned s\tall answer ping s\tprovisioned/min\tbroker MB\tprovisioner MB\tserver MB\tsupervisor MB\t")
	mb := func(kb uint64) string { return fmt.Sprintf("%.1f", float64(kb)/1024) }
	for _, r := range results {
		fmt.Fprintf(tw, "%d\t%.2f\t%.2f\t%.2f\t%.2f\t%.0f\t%s\t%s\t%s\t%s\t\n", r.Servers,
			r.Phases.Network.Seconds(), r.Phases.Broker.Seconds(), r.Phases.Provisioned.Seconds(), r.Ping.Seconds(), r.PerMinute,
			mb(r.PeakRSS["broker"]), mb(r.PeakRSS["provisioner"]), mb(r.PeakRSS["server"]), mb(r.PeakRSS["supervisor"]))
	}
	tw.Flush()
}
