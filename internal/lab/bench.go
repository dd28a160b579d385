package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/prometheus/procfs"

	"github.com/reproducible-choria/deployment/internal/netlab"
	"github.com/reproducible-choria/deployment/internal/poll"
	"github.com/reproducible-choria/deployment/internal/supervisor"
	"github.com/reproducible-choria/deployment/topology"
)

// BenchOptions control `choria-lab bench`.
type BenchOptions struct {
	// Lab is the bring-up of each lab; its Servers is set per count.
	Lab Options
	// Counts are the server counts measured, a fresh lab each.
	Counts []int
	// Settle is how long the answering fleet is left alone before the idle
	// window opens: its first plugin deployment, facts and registration
	// are not idle work.
	Settle time.Duration
	// Idle is how long the fleet is watched, answering and idle, for the
	// idle CPU figure.
	Idle time.Duration
}

// BenchResult is one fresh lab's bring-up, measured. Times are seconds
// from the start of Up; memory is KiB.
type BenchResult struct {
	Servers     int     `json:"servers"`
	Network     float64 `json:"network_s"`
	Broker      float64 `json:"broker_ready_s"`
	Services    float64 `json:"services_ready_s"`
	Provisioned float64 `json:"all_provisioned_s"`
	// Up is when `choria-lab up` says the lab is up: every server connected
	// with its provisioned identity.
	Up float64 `json:"up_s"`
	// Ping is when every server had answered choria ping from the client.
	Ping float64 `json:"all_answer_ping_s"`
	// PerMinute is the provisioning rate: servers over the time from the
	// services being ready to the last server provisioned.
	PerMinute float64 `json:"provisioned_per_minute"`
	// CPU is the CPU seconds each role's processes (and the children they
	// waited for) used from their start until every server answered;
	// "supervisor" is choria-lab itself.
	CPU map[string]float64 `json:"cpu_s"`
	// CPUPerServer is the mean CPU seconds of one server from its first
	// start to its answering (read when its status file first shows it
	// connected, provisioned): what a server costs to come up.
	CPUPerServer float64 `json:"cpu_s_per_server"`
	// FleetCPUPerServer is CPU["server"] over the servers: also what the
	// servers that answered early used while the rest came up.
	FleetCPUPerServer float64 `json:"fleet_cpu_s_per_server"`
	// IdleCPUPerServer is the share of one core a provisioned, answering
	// server uses while nothing is asked of it, over IdleWindow seconds
	// that open SettleWindow seconds after every server answered ping.
	IdleCPUPerServer float64 `json:"idle_core_share_per_server"`
	IdleWindow       float64 `json:"idle_window_s"`
	SettleWindow     float64 `json:"settle_s"`
	// Error says why a lab that came up was not measured to the end; the
	// figures after the failure are 0.
	Error string `json:"error,omitempty"`
	// BrokerRecovery is the seconds from the first broker's kill -9 (the
	// supervisor restarting it at once, as systemd's Restart= does) to
	// every server answering choria ping again; measured last.
	BrokerRecovery float64 `json:"broker_kill_to_answering_s"`
	// PSS is the proportional set size of each role's process; for
	// servers the mean of one server and its host's anchor.
	PSS map[string]uint64 `json:"pss_kib"`
	// PeakRSS is the high-water resident set (VmHWM) of the broker, the
	// provisioner, the first server and the supervisor.
	PeakRSS map[string]uint64 `json:"peak_rss_kib"`
}

// Bench brings up a fresh lab for each server count and measures it.
func Bench(ctx context.Context, o BenchOptions) ([]BenchResult, error) {
	var results []BenchResult
	for _, n := range o.Counts {
		lo := o.Lab
		lo.Servers = n
		if lo.Log != nil {
			lo.Log.Info(fmt.Sprintf("bench: %d servers", n))
		}
		res, err := benchOne(ctx, lo, n, o.Settle, o.Idle)
		if err != nil {
			err = fmt.Errorf("benchmark with %d servers: %w", n, err)
		}
		if res != nil {
			// a lab that came up keeps what was measured before the failure
			if err != nil {
				res.Error = err.Error()
			}
			results = append(results, *res)
		}
		if err != nil {
			return results, err
		}
	}
	return results, nil
}

func benchOne(ctx context.Context, o Options, n int, settle, idle time.Duration) (*BenchResult, error) {
	start := time.Now()
	// this process also ran the labs measured before this one
	supervisorBefore := cpuSeconds(os.Getpid())
	r, err := Up(ctx, o)
	if err != nil {
		return nil, err
	}
	defer r.Down()
	ph := r.Phases
	res := &BenchResult{Servers: n, Network: ph.Network.Seconds(), Broker: ph.Broker.Seconds(), Services: ph.Services.Seconds(),
		Provisioned: ph.Provisioned.Seconds(), Up: ph.Answering.Seconds()}
	st := r.State()
	pw, err := r.Plan.Layout.Credentials().UserPassword("choria")
	if err != nil {
		return res, err
	}
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	_, err = Login(lctx, st, "client", "choria", pw)
	cancel()
	if err != nil {
		return res, err
	}
	if err := waitPing(ctx, st, n, pingLimit(n)); err != nil {
		return res, err
	}
	res.Ping = time.Since(start).Seconds()
	if provisioning := ph.Provisioned - ph.Services; provisioning > 0 {
		res.PerMinute = float64(n) / provisioning.Minutes()
	}

	procs := r.supervisor.Snapshots()
	hosts := hostsByName(st)
	res.CPU = cpuByRole(procs, hosts)
	res.CPU["supervisor"] = cpuSeconds(os.Getpid()) - supervisorBefore
	res.FleetCPUPerServer = res.CPU[topology.RoleServer] / float64(n)
	for _, s := range r.servers {
		res.CPUPerServer += s.cpu / float64(len(r.servers))
	}

	if idle > 0 {
		if err := poll.Sleep(ctx, settle); err != nil {
			return res, err
		}
		res.SettleWindow = settle.Seconds()
		before := cpuByRole(procs, hosts)[topology.RoleServer]
		if err := poll.Sleep(ctx, idle); err != nil {
			return res, err
		}
		after := cpuByRole(procs, hosts)[topology.RoleServer]
		res.IdleWindow = idle.Seconds()
		res.IdleCPUPerServer = (after - before) / idle.Seconds() / float64(n)
	}

	res.PSS, res.PeakRSS = memory(procs, hosts, r.Plan.Topology.ServerName(1))
	if res.BrokerRecovery, err = brokerRecovery(ctx, r, st, n); err != nil {
		return res, err
	}
	return res, nil
}

// brokerRecovery kills the first broker as a crash would and returns the
// seconds until every server answers choria ping again. The pings start
// once the broker serves again: one started while it is down waits on the
// client's own connection back-off, which is not the fleet's recovery.
func brokerRecovery(ctx context.Context, r *Running, st *State, n int) (float64, error) {
	broker := r.Plan.Topology.BrokerHosts()[0].Name
	killed := time.Now()
	if err := r.Kill(broker, "broker", false); err != nil {
		return 0, err
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	err := r.WaitServing(wctx, broker)
	cancel()
	if err != nil {
		return 0, fmt.Errorf("after kill -9 of the broker: %w", err)
	}
	if err := waitPing(ctx, st, n, pingLimit(n)); err != nil {
		return 0, fmt.Errorf("after kill -9 of the broker: %w", err)
	}
	return time.Since(killed).Seconds(), nil
}

func hostsByName(st *State) map[string]HostState {
	hosts := make(map[string]HostState, len(st.Hosts))
	for _, h := range st.Hosts {
		hosts[h.Name] = h
	}
	return hosts
}

// cpuByRole sums the CPU seconds of the processes by their host's role.
func cpuByRole(procs []supervisor.Snapshot, hosts map[string]HostState) map[string]float64 {
	out := map[string]float64{}
	for _, p := range procs {
		out[hosts[p.Host].Role] += cpuSeconds(p.PID)
	}
	return out
}

// userHZ is the unit of the children's times in /proc/PID/stat, as procfs
// takes it for the process's own.
const userHZ = 100

// cpuSeconds is the CPU time of a process and of the children it waited
// for; 0 when it is gone.
func cpuSeconds(pid int) float64 {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return 0
	}
	s, err := p.Stat()
	if err != nil {
		return 0
	}
	return s.CPUTime() + float64(s.CUTime+s.CSTime)/userHZ
}

// memory reads the PSS of every role's process (servers: the mean of a
// server with its anchor) and the peak RSS of the broker, the
// provisioner, one server and the supervisor.
func memory(procs []supervisor.Snapshot, hosts map[string]HostState, oneServer string) (pss, peak map[string]uint64) {
	pss, peak = map[string]uint64{}, map[string]uint64{}
	var serverSum, servers uint64
	for _, p := range procs {
		h := hosts[p.Host]
		switch h.Role {
		case topology.RoleServer:
			serverSum += pssKiB(p.PID) + pssKiB(h.AnchorPID)
			servers++
			if p.Host == oneServer {
				peak[h.Role] = peakRSSKiB(p.PID)
			}
			continue
		case topology.RoleBroker, topology.RoleProvisioner:
			peak[h.Role] = peakRSSKiB(p.PID)
		}
		pss[h.Role] += pssKiB(p.PID)
	}
	if servers > 0 {
		pss[topology.RoleServer] = serverSum / servers
	}
	pss["supervisor"] = pssKiB(os.Getpid())
	peak["supervisor"] = peakRSSKiB(os.Getpid())
	return pss, peak
}

func pssKiB(pid int) uint64 {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return 0
	}
	r, err := p.ProcSMapsRollup()
	if err != nil {
		return 0
	}
	return r.Pss / 1024
}

func peakRSSKiB(pid int) uint64 {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return 0
	}
	s, err := p.NewStatus()
	if err != nil {
		return 0
	}
	return s.VmHWM / 1024
}

var pingReplies = regexp.MustCompile(`(\d+) replies`)

// pingTimeout is how many seconds one ping of n servers waits for them:
// the default 2 s for a small fleet, more for hundreds of servers on a
// loaded machine (500 answered one ping over 3-10 s here). Kept short
// where it can be: a ping that misses one server waits all of it.
func pingTimeout(n int) int { return max(2, n/40) }

// pingAttempt bounds one ping: its time-out and half again, at least 2 s,
// for the client's start, connection and signing. The client has each request
// signed by the AAA service over the broker, and a signing request sent
// while aaasvc is still reconnecting after a broker restart is lost: the
// client then waits the signer's 10 s time-out and fails ("expected 1
// response received 0"). Cut short, the next ping is signed at once.
func pingAttempt(n int) time.Duration {
	t := pingTimeout(n)
	return time.Duration(t+max(2, t/2)) * time.Second
}

// pingLimit is how long the bench waits for every server to answer one
// ping: 2 min, or 0.5 s a server for hundreds of them, whose last servers
// are still deploying their plugins when the lab is up (at 500, pings
// got 96-494 replies taking up to 12.7 s in the first 2 min).
func pingLimit(n int) time.Duration { return max(2*time.Minute, time.Duration(n)*500*time.Millisecond) }

// waitPing runs choria ping on the client until n servers answer one.
func waitPing(ctx context.Context, st *State, n int, limit time.Duration) error {
	h, err := st.Host(topology.RoleClient)
	if err != nil {
		return err
	}
	// one ping is bounded by the wait's own limit and by ctx
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	last, most := "", 0
	err = poll.Until(ctx, 200*time.Millisecond, func() (bool, error) {
		actx, acancel := context.WithTimeout(ctx, pingAttempt(n))
		defer acancel()
		cmd := netlab.EnterCommandContext(actx, h.AnchorPID, []string{"choria", "ping", "--expect", strconv.Itoa(n), "--timeout", strconv.Itoa(pingTimeout(n))})
		cmd.Env = st.Env
		out, _ := cmd.CombinedOutput()
		if ctx.Err() != nil {
			// cut short by the limit: not an answer
			return false, nil
		}
		last = string(out)
		m := pingReplies.FindStringSubmatch(last)
		got := 0
		if m != nil {
			got, _ = strconv.Atoi(m[1])
		}
		most = max(most, got)
		return got >= n, nil
	})
	if err != nil {
		return fmt.Errorf("not all %d servers answered choria ping within %s (at most %d in one ping): %w; last output: %s", n, limit, most, err, lastLine(last))
	}
	return nil
}

// WriteBench prints the results as a table.
func WriteBench(w io.Writer, results []BenchResult) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "servers\tbroker ready s\tall provisioned s\tup s\tall answer ping s\tprovisioned/min\tCPU-s/server\tfleet CPU-s/server\tidle CPU/server (%)\tbroker kill to answering s\tbroker MiB\tprovisioner MiB\tserver PSS MiB\tsupervisor MiB\t")
	// a figure a failed count did not reach is 0: shown as not measured
	fig := func(format string, v float64) string {
		if v == 0 {
			return "-"
		}
		return fmt.Sprintf(format, v)
	}
	mib := func(kib uint64) string { return fig("%.1f", float64(kib)/1024) }
	for _, r := range results {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.Servers,
			fig("%.1f", r.Broker), fig("%.1f", r.Provisioned), fig("%.1f", r.Up), fig("%.1f", r.Ping), fig("%.0f", r.PerMinute),
			fig("%.2f", r.CPUPerServer), fig("%.2f", r.FleetCPUPerServer), fig("%.3f", 100*r.IdleCPUPerServer), fig("%.1f", r.BrokerRecovery),
			mib(r.PeakRSS[topology.RoleBroker]), mib(r.PeakRSS[topology.RoleProvisioner]), mib(r.PSS[topology.RoleServer]), mib(r.PeakRSS["supervisor"]))
	}
	tw.Flush()
}

// WriteBenchJSON writes the results, every figure, as JSON.
func WriteBenchJSON(w io.Writer, results []BenchResult) error {
	sorted := slices.Clone(results)
	slices.SortFunc(sorted, func(a, b BenchResult) int { return a.Servers - b.Servers })
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(sorted)
}
