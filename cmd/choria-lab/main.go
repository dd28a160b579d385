// Command choria-lab runs the whole Choria reference deployment on Linux
// namespaces: see internal/lab.
package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/choria-io/fisk"

	"github.com/reproducible-choria/deployment/internal/atomicfile"
	"github.com/reproducible-choria/deployment/internal/clilog"
	"github.com/reproducible-choria/deployment/internal/lab"
	"github.com/reproducible-choria/deployment/internal/netlab"
	"github.com/reproducible-choria/deployment/internal/poll"
	"github.com/reproducible-choria/deployment/internal/upstreambuild"
	"github.com/reproducible-choria/deployment/internal/walkthrough"
	"github.com/reproducible-choria/deployment/upstream"
)

func main() {
	// the lab re-executes itself as the namespace anchors
	netlab.RunAnchorIfRequested()

	app := fisk.New("choria-lab", "The Choria reference deployment on Linux namespaces: broker, provisioner, AAA, servers, client, NATS and the Stream Replicator, sealed from this machine's networks.")
	dir := app.Flag("dir", "Lab directory holding credentials, state and logs").Default(lab.DefaultDir()).String()
	debug := app.Flag("debug", "Also log what each step does (every process started, every upstream build command)").UnNegatableBool()

	up := app.Command("up", "Build the lab and supervise it until Ctrl-C or `choria-lab down`").Default()
	servers := up.Flag("servers", "Number of Choria servers").Default("10").Int()
	brokers := up.Flag("brokers", "Number of Choria brokers (default: the topology's, one); more than one is a cluster, its streams replicated").PlaceHolder("N").Int()
	reference := up.Flag("reference-timings", "Keep the reference's intervals (registration, facts, plugins) instead of the lab's short ones").UnNegatableBool()
	topoFile := up.Flag("topology", "Topology file (default: the built-in one)").PlaceHolder("FILE").String()
	binDirs := up.Flag("bin-dir", "Directory to find the upstream programs in before PATH (repeatable)").PlaceHolder("DIR").Strings()
	nixosLike := up.Flag("nixos-like", "Hide this machine's /usr/bin and /usr/sbin from the hosts but for sh and env, as on NixOS: every tool then comes from PATH").UnNegatableBool()
	window := up.Flag("start-window", "Servers between their first start and answering at once; the rest wait to start (0: all at once)").Default(strconv.Itoa(lab.DefaultStartWindow())).Int()
	timeout := up.Flag("timeout", "Give up when the lab is not up within this time (default: 3m plus 0.6s a server)").PlaceHolder("DURATION").Duration()

	down := app.Command("down", "Stop the running lab and remove its namespaces, bridges and mounts")
	purge := down.Flag("purge", "Also remove the lab directory: credentials, state and logs").UnNegatableBool()

	shell := app.Command("shell", "Open a login shell on a host")
	shellHost := shell.Arg("host", "Host name").Default("client").String()

	execCmd := app.Command("exec", "Run one command on a host; its exit status is passed through")
	execHost := execCmd.Arg("host", "Host name").Required().String()
	execArgv := execCmd.Arg("command", "Command and arguments (after --)").Required().Strings()

	login := app.Command("login", "Log the client in with `choria login`, answering its prompts with the user's generated password")
	loginUser := login.Arg("user", "AAA user: admin, streams or choria").Default("choria").String()

	status := app.Command("status", "Show the hosts, their processes and health")

	logs := app.Command("logs", "Show the logs of a host's processes")
	logsHost := logs.Arg("host", "Host name").Required().String()
	follow := logs.Flag("follow", "Keep printing new lines").Short('f').UnNegatableBool()

	bench := app.Command("bench", "Bring up fresh labs and measure them: seconds to broker ready, all provisioned, all answering ping; provisioning rate; CPU seconds per server, idle CPU; memory (PSS, peak RSS)")
	benchServers := bench.Flag("servers", "Server counts to measure, a fresh lab each (repeatable; up to the servers network's size, 766 by default)").Default("10", "50").Ints()
	benchBrokers := bench.Flag("brokers", "Number of Choria brokers (default: the topology's, one)").PlaceHolder("N").Int()
	benchBinDirs := bench.Flag("bin-dir", "Directory to find the upstream programs in before PATH (repeatable)").PlaceHolder("DIR").Strings()
	benchWindow := bench.Flag("start-window", "Servers between their first start and answering at once (0: all at once)").Default(strconv.Itoa(lab.DefaultStartWindow())).Int()
	benchSettle := bench.Flag("settle", "How long the answering fleet is left alone before its idle CPU is measured (its first plugin deployment, facts and registration)").Default("60s").Duration()
	benchIdle := bench.Flag("idle", "How long to watch the answering fleet for its idle CPU (0: not measured)").Default("30s").Duration()
	benchTimeout := bench.Flag("timeout", "Give up on a lab that is not up within this time (default: 3m plus 0.6s a server)").PlaceHolder("DURATION").Duration()
	benchJSON := bench.Flag("json", "Also write every figure as JSON to FILE").PlaceHolder("FILE").String()
	benchPlot := bench.Flag("plot", "Also draw time to provisioned and to answering against servers into FILE (.svg or .png)").PlaceHolder("FILE").String()

	walk := app.Command("walkthrough", "Run the reference README's walkthrough (walkthrough/scenario.json) against the running lab, one line per step")
	walkReport := walk.Flag("report", "Write a JSON report of every step to FILE").PlaceHolder("FILE").String()
	walkContinue := walk.Flag("continue", "Run every step even after one fails").UnNegatableBool()
	walkOnly := walk.Flag("only", "Run only the steps whose names match REGEX").PlaceHolder("REGEX").String()

	buildUp := app.Command("build-upstream", "Build the upstream programs (choria, choria-provisioner, aaasvc, stream-replicator, nats-server, nats) from their pinned sources into the cache, as the Nix packages build them")
	buildSources := buildUp.Flag("sources", "Directory of the pinned source archives, named REPO-REF.tar.gz").Envar("CHORIA_UPSTREAM_SOURCES").Required().ExistingDir()
	buildCache := buildUp.Flag("cache", "Cache of built programs (default: $CHORIA_UPSTREAM_CACHE, /var/cache/choria-reference/upstream for root, else the user cache directory)").PlaceHolder("DIR").String()
	buildOut := buildUp.Flag("out", "Also copy the programs into DIR").PlaceHolder("DIR").String()
	buildOnly := buildUp.Flag("only", "Build only this program (repeatable)").PlaceHolder("NAME").Strings()

	cmd := app.MustParseWithUsage(os.Args[1:])
	layout := lab.Layout{Dir: *dir}
	log := clilog.New(os.Stderr, "choria-lab", clilog.Level(*debug))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// a closed stdout (the reader of our output went away) must not kill
	// the supervisor before it tears the lab down: writes then fail with
	// EPIPE instead. Notify, not Ignore: an ignored signal would be
	// inherited by every program the lab starts.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	defer stop()

	var err error
	code := 0
	switch cmd {
	case up.FullCommand():
		err = runUp(ctx, lab.Options{Dir: *dir, Servers: *servers, Brokers: *brokers, ReferenceTimings: *reference, TopologyFile: *topoFile, BinDirs: *binDirs, NixOSLike: *nixosLike, StartWindow: startWindow(*window), Timeout: *timeout, Log: log})
	case down.FullCommand():
		err = runDown(layout, *purge)
	case shell.FullCommand():
		// start in the home directory, as a login would
		code, err = enter(layout, *shellHost, []string{"/bin/sh", "-c", "cd /root && exec bash --login"})
	case execCmd.FullCommand():
		code, err = enter(layout, *execHost, *execArgv)
	case login.FullCommand():
		err = runLogin(ctx, layout, *loginUser)
	case status.FullCommand():
		var st *lab.State
		if st, err = lab.ReadState(layout); err == nil {
			lab.WriteStatus(os.Stdout, layout, st)
			err = writeCluster(ctx, st)
		}
	case logs.FullCommand():
		err = lab.WriteLogs(os.Stdout, layout, *logsHost, *follow, ctx.Done())
	case bench.FullCommand():
		err = runBench(ctx, lab.BenchOptions{Lab: lab.Options{Dir: *dir, Brokers: *benchBrokers, BinDirs: *benchBinDirs, StartWindow: startWindow(*benchWindow), Timeout: *benchTimeout, Log: log}, Counts: *benchServers, Settle: *benchSettle, Idle: *benchIdle}, *benchJSON, *benchPlot)
	case walk.FullCommand():
		_, err = walkthrough.RunLab(ctx, walkthrough.LabOptions{Layout: layout, Report: *walkReport, Continue: *walkContinue, Only: *walkOnly, Out: os.Stdout})
	case buildUp.FullCommand():
		err = runBuildUpstream(ctx, upstreambuild.Options{Sources: *buildSources, Cache: *buildCache, Only: *buildOnly, Log: log}, *buildOut)
	}
	if err != nil {
		log.Error(err.Error())
		os.Exit(1)
	}
	os.Exit(code)
}

func runUp(ctx context.Context, o lab.Options) error {
	r, err := lab.Up(ctx, o)
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return fmt.Errorf("interrupted; everything the lab had started is removed")
		}
		return err
	}
	r.WriteSummary(os.Stdout)
	<-ctx.Done()
	fmt.Println("\nchoria-lab: stopping")
	r.Down()
	fmt.Println("choria-lab: stopped; no process, namespace, bridge or mount of the lab is left (credentials kept in " + o.Dir + ")")
	return nil
}

// writeCluster adds the cluster's routes and meta leader to the status of
// a lab with more than one broker.
func writeCluster(ctx context.Context, st *lab.State) error {
	views, err := lab.ClusterViews(ctx, st)
	if err != nil || len(views) < 2 {
		return err
	}
	fmt.Println()
	lab.WriteCluster(os.Stdout, st, views)
	return nil
}

// runBench measures, then writes what it measured, also when a later
// count failed.
func runBench(ctx context.Context, o lab.BenchOptions, jsonFile, plotFile string) error {
	if plotFile != "" {
		if ext := filepath.Ext(plotFile); ext != ".svg" && ext != ".png" {
			return fmt.Errorf("--plot %s: the file must end in .svg or .png", plotFile)
		}
	}
	results, err := lab.Bench(ctx, o)
	lab.WriteBench(os.Stdout, results)
	if len(results) == 0 {
		return err
	}
	if jsonFile != "" {
		b := &bytes.Buffer{}
		if werr := lab.WriteBenchJSON(b, results); werr != nil {
			return errors.Join(err, werr)
		}
		if werr := atomicfile.Write(jsonFile, b.Bytes(), 0o644); werr != nil {
			return errors.Join(err, werr)
		}
	}
	if plotFile != "" {
		if werr := lab.WriteBenchPlot(plotFile, results); werr != nil {
			return errors.Join(err, werr)
		}
	}
	return err
}

func runDown(l lab.Layout, purge bool) error {
	st, err := lab.ReadState(l)
	switch {
	case errors.Is(err, lab.ErrNotRunning):
		fmt.Println("choria-lab: no lab is running in " + l.Dir)
	case err != nil:
		return err
	default:
		if err := syscall.Kill(st.PID, syscall.SIGTERM); err != nil {
			return fmt.Errorf("stopping the lab (pid %d): %w", st.PID, err)
		}
		// stopped once it let go of the lab's lock: a pid may linger as a
		// zombie, or be another process's by now
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := poll.Until(ctx, 100*time.Millisecond, func() (bool, error) {
			_, err := lab.ReadState(l)
			return errors.Is(err, lab.ErrNotRunning), nil
		}); err != nil {
			return fmt.Errorf("the lab (pid %d) did not stop within 30s", st.PID)
		}
		fmt.Println("choria-lab: stopped")
	}
	if purge {
		if err := os.RemoveAll(l.Dir); err != nil {
			return fmt.Errorf("removing %s: %w", l.Dir, err)
		}
		fmt.Println("choria-lab: removed " + l.Dir)
	}
	return nil
}

func runLogin(ctx context.Context, l lab.Layout, user string) error {
	st, err := lab.ReadState(l)
	if err != nil {
		return err
	}
	pw, err := l.Credentials().UserPassword(user)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := lab.Login(ctx, st, "client", user, pw); err != nil {
		return err
	}
	fmt.Printf("choria-lab: the client is logged in as %s\n", user)
	return nil
}

// enter runs argv on a host of the running lab with the terminal attached.
func enter(l lab.Layout, host string, argv []string) (int, error) {
	st, err := lab.ReadState(l)
	if err != nil {
		return 1, err
	}
	h, err := st.Host(host)
	if err != nil {
		return 1, err
	}
	cmd := netlab.EnterCommand(h.AnchorPID, argv)
	cmd.Env = append(st.Env, "TERM="+os.Getenv("TERM"))
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	signal.Ignore(os.Interrupt) // the command in the host handles Ctrl-C
	err = cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), nil
	}
	if err != nil {
		return 1, fmt.Errorf("running %v on %s: %w", argv, host, err)
	}
	return 0, nil
}

func runBuildUpstream(ctx context.Context, o upstreambuild.Options, out string) error {
	pins, err := upstream.Load()
	if err != nil {
		return err
	}
	start := time.Now()
	built, err := upstreambuild.Build(ctx, pins, o)
	if err != nil {
		return err
	}
	if out != "" {
		if err := built.CopyTo(out); err != nil {
			return err
		}
	}
	fmt.Printf("choria-lab: %d upstream programs ready in %s:\n", len(built.Paths), time.Since(start).Round(time.Second))
	for _, name := range slices.Sorted(maps.Keys(built.Paths)) {
		p := built.Paths[name]
		if out != "" {
			p = filepath.Join(out, filepath.Base(p))
		}
		fmt.Printf("  %-20s %s\n", name, p)
	}
	fmt.Println("The lab and the end-to-end tests find them in the cache by themselves.")
	return nil
}

// startWindow maps the flag's 0 (all at once) to lab.Options' negative.
func startWindow(flag int) int {
	if flag <= 0 {
		return -1
	}
	return flag
}
