// Package supervisor runs programs and keeps them running, as systemd does
// for the lab's services: each in its own process group, its output on a
// write-only stream socket copied to a log file, restarted with back-off
// when it dies, and stopped in reverse order of starting.
package supervisor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/reproducible-choria/deployment/internal/poll"
)

// Backoff bounds for restarting a process that died; the NixOS units
// restart alike (restartPolicy in nix/modules/lib.nix).
const (
	MinBackoff = 250 * time.Millisecond
	MaxBackoff = 30 * time.Second
	// a process that ran this long is healthy again: its next death restarts at once
	stableAfter = time.Minute
	stopGrace   = 5 * time.Second
	// how long Stop waits, after the processes ended, for what they wrote
	// last to reach their logs (a descendant that outlived them may keep
	// its log open for ever)
	logDrain = time.Second
)

// Host is where programs run: a lab host, whose commands are nsenter
// entering its namespaces and forking the program there.
type Host interface {
	Name() string
	Command(ctx context.Context, name string, args ...string) *exec.Cmd
}

// Program is what to run.
type Program struct {
	Name string
	Argv []string
	Env  []string
	// Log is the file its standard output and error are appended to.
	Log string
}

// Supervisor runs programs on hosts and restarts any that die, with
// back-off, logging each death.
type Supervisor struct {
	log *slog.Logger

	mu       sync.Mutex
	procs    []*Supervised
	stopping bool
	wg       sync.WaitGroup
	// logs counts the copiers of the processes' output into their logs
	logs    sync.WaitGroup
	changed chan struct{}
	// stopped is closed by Stop, ending back-off waits at once
	stopped chan struct{}
}

// Supervised is one program under supervision.
type Supervised struct {
	Host    string
	Program Program

	mu sync.Mutex
	// pid is the program's once it shows, the launcher's (nsenter's) until
	// then; the launcher (cmd) leads the program's process group
	pid      int
	restarts int
	lastExit string
	cmd      *exec.Cmd
	// held keeps the process down once it dies, until Resume
	held   bool
	resume chan struct{}
}

// Snapshot is a process's state, as lab.json publishes it.
type Snapshot struct {
	Host, Name string
	PID        int
	Restarts   int
	LastExit   string
}

// New returns a supervisor reporting deaths and restarts to log.
func New(log *slog.Logger) *Supervisor {
	return &Supervisor{log: log, changed: make(chan struct{}, 1), stopped: make(chan struct{})}
}

// Changed is signalled whenever a process starts or restarts.
func (s *Supervisor) Changed() <-chan struct{} { return s.changed }

// Stopped is closed when Stop begins.
func (s *Supervisor) Stopped() <-chan struct{} { return s.stopped }

// Start runs p on host and keeps it running until Stop.
func (s *Supervisor) Start(host Host, p Program) (*Supervised, error) {
	if err := os.MkdirAll(filepath.Dir(p.Log), 0o755); err != nil {
		return nil, fmt.Errorf("creating log directory for %s on %s: %w", p.Name, host.Name(), err)
	}
	sp := &Supervised{Host: host.Name(), Program: p, resume: make(chan struct{}, 1)}
	if err := s.launch(host, sp); err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.procs = append(s.procs, sp)
	s.mu.Unlock()
	s.wg.Add(1)
	go s.watch(host, sp)
	return sp, nil
}

func (s *Supervisor) launch(host Host, sp *Supervised) error {
	p := sp.Program
	out, err := journalStream(p.Log, &s.logs)
	if err != nil {
		return fmt.Errorf("logging %s on %s: %w", p.Name, sp.Host, err)
	}
	defer out.Close()
	cmd := host.Command(context.Background(), p.Argv[0], p.Argv[1:]...)
	cmd.Env = p.Env
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.Dir = "/"
	// own process group: a Ctrl-C at the terminal reaches the supervisor,
	// which stops everything in order, not every process at once
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s on %s: %w", p.Name, sp.Host, err)
	}
	sp.mu.Lock()
	sp.cmd = cmd
	sp.pid = cmd.Process.Pid
	sp.mu.Unlock()
	s.log.Debug("started", "host", sp.Host, "process", p.Name, "pid", cmd.Process.Pid)
	if s.isStopping() {
		// Stop ran while this one started and could not signal it
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	}
	s.notify()
	return nil
}

func (s *Supervisor) notify() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

func (s *Supervisor) isStopping() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopping
}

func (s *Supervisor) watch(host Host, sp *Supervised) {
	defer s.wg.Done()
	backoff := MinBackoff
	for {
		sp.mu.Lock()
		cmd := sp.cmd
		sp.mu.Unlock()
		started := time.Now()
		// nsenter enters the host's PID namespace by forking: the program
		// is its child, the pid to report. Found here, in the process's own
		// goroutine, so that starting a fleet does not wait on it.
		if filepath.Base(cmd.Path) == "nsenter" {
			if child := programOf(cmd.Process.Pid); child != 0 {
				sp.mu.Lock()
				sp.pid = child
				sp.mu.Unlock()
				s.notify()
			}
		}
		err := cmd.Wait()
		if s.isStopping() {
			return
		}
		status := "exited"
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			status = ee.ProcessState.String()
		} else if err != nil {
			status = err.Error()
		}
		if time.Since(started) > stableAfter {
			backoff = MinBackoff
		}
		sp.mu.Lock()
		sp.restarts++
		sp.lastExit = status
		sp.pid = 0
		held := sp.held
		sp.mu.Unlock()
		s.notify()
		if held {
			s.log.Warn(fmt.Sprintf("%s on %s died (%s); held down until resumed", sp.Program.Name, sp.Host, status))
			select {
			case <-s.stopped:
				return
			case <-sp.resume:
			}
			// started at once, as `systemctl start` does
			backoff = 0
		} else {
			s.log.Warn(fmt.Sprintf("%s on %s died (%s); restarting in %s", sp.Program.Name, sp.Host, status, backoff))
		}
		for {
			if !s.sleep(backoff) {
				return
			}
			backoff = min(max(backoff*2, MinBackoff), MaxBackoff)
			err := s.launch(host, sp)
			if err == nil {
				break
			}
			s.log.Warn(fmt.Sprintf("%v; retrying in %s", err, backoff))
		}
	}
}

// sleep waits d, or less when the supervisor stops; false means it stopped.
func (s *Supervisor) sleep(d time.Duration) bool {
	select {
	case <-s.stopped:
		return false
	case <-time.After(d):
		return !s.isStopping()
	}
}

// Restarts is how often the process has been restarted.
func (sp *Supervised) Restarts() int {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	return sp.restarts
}

// PID is the program's process id (its launcher's for the first moments
// after a start).
func (sp *Supervised) PID() int {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	return sp.pid
}

// Kill sends sig to the process's group at once, as `systemctl kill` does
// (SIGKILL: `kill -9` of everything the service runs). With hold the
// supervisor keeps the process down once it dies, until Resume: a service
// stopped, not merely crashed.
func (sp *Supervised) Kill(sig syscall.Signal, hold bool) {
	sp.mu.Lock()
	sp.held = hold
	sp.mu.Unlock()
	select {
	case <-sp.resume: // a Resume from before does not end this hold
	default:
	}
	sp.signal(sig)
}

// Resume ends a hold: a process held down starts again at once; one still
// running is restarted as usual when it next dies.
func (sp *Supervised) Resume() {
	sp.mu.Lock()
	sp.held = false
	sp.mu.Unlock()
	select {
	case sp.resume <- struct{}{}:
	default:
	}
}

// Running tells whether the process runs now.
func (sp *Supervised) Running() bool {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	return sp.pid != 0
}

// Find returns the supervised process named name on host.
func (s *Supervisor) Find(host, name string) (*Supervised, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sp := range s.procs {
		if sp.Host == host && sp.Program.Name == name {
			return sp, nil
		}
	}
	return nil, fmt.Errorf("no process %s on host %s", name, host)
}

// Snapshots returns every process's state, in the order they were started.
func (s *Supervisor) Snapshots() []Snapshot {
	s.mu.Lock()
	procs := append([]*Supervised(nil), s.procs...)
	s.mu.Unlock()
	out := make([]Snapshot, 0, len(procs))
	for _, sp := range procs {
		sp.mu.Lock()
		out = append(out, Snapshot{Host: sp.Host, Name: sp.Program.Name, PID: sp.pid, Restarts: sp.restarts, LastExit: sp.lastExit})
		sp.mu.Unlock()
	}
	return out
}

// Stop sends SIGTERM to every process's group (what it started too), the
// last started first (servers before the broker), gives them all one grace
// period together, then kills the groups that are left; it returns once
// they are gone and what they wrote is in their logs (at most logDrain
// later).
func (s *Supervisor) Stop() {
	s.mu.Lock()
	if !s.stopping {
		close(s.stopped)
	}
	s.stopping = true
	procs := append([]*Supervised(nil), s.procs...)
	s.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].signal(syscall.SIGTERM)
	}
	done := waited(&s.wg)
	select {
	case <-done:
	case <-time.After(stopGrace):
		for _, sp := range procs {
			sp.signal(syscall.SIGKILL)
		}
		<-done
	}
	// a stopped lab's logs end with the processes' last words
	select {
	case <-waited(&s.logs):
	case <-time.After(logDrain):
	}
}

// waited is closed once wg's count is zero.
func waited(wg *sync.WaitGroup) <-chan struct{} {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	return done
}

// signal signals the process's group: each process leads its own (Setpgid).
func (sp *Supervised) signal(sig syscall.Signal) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.cmd != nil && sp.cmd.Process != nil && sp.pid != 0 {
		_ = syscall.Kill(-sp.cmd.Process.Pid, sig)
	}
}

// journalStream gives a process what systemd gives a service whose output
// goes to the journal: a connected stream socket as standard output and
// error, which it can write but not read. The other end is copied into
// the process's log file until every writer has closed it. Programs that
// open /dev/stdout fail on it as they fail under systemd.
func journalStream(logPath string, copiers *sync.WaitGroup) (*os.File, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		logf.Close()
		return nil, fmt.Errorf("making the output socket: %w", err)
	}
	if err := syscall.Shutdown(fds[1], syscall.SHUT_RD); err != nil {
		logf.Close()
		syscall.Close(fds[0])
		syscall.Close(fds[1])
		return nil, fmt.Errorf("making the output socket write-only: %w", err)
	}
	collector := os.NewFile(uintptr(fds[0]), "journal")
	copiers.Add(1)
	go func() {
		defer copiers.Done()
		defer logf.Close()
		defer collector.Close()
		_, _ = io.Copy(logf, collector)
	}()
	return os.NewFile(uintptr(fds[1]), "stdout"), nil
}

// programOf is the one child nsenter (pid) forks into the host's PID
// namespace, once it is there (within a second); 0 when it does not show.
func programOf(pid int) int {
	path := fmt.Sprintf("/proc/%d/task/%d/children", pid, pid)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	child := 0
	_ = poll.Until(ctx, 10*time.Millisecond, func() (bool, error) {
		b, err := os.ReadFile(path)
		if err != nil || !Alive(pid) {
			return true, nil // nsenter is gone: the program ended already
		}
		if f := strings.Fields(string(b)); len(f) > 0 {
			child, _ = strconv.Atoi(f[0])
			return true, nil
		}
		return false, nil
	})
	return child
}

// Alive tells whether process pid runs: it exists and has not ended (a
// zombie not yet waited for has).
func Alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	return len(f) > 0 && f[0] != "Z"
}
