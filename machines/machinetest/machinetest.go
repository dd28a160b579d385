// Package machinetest loads and runs autonomous agents with go-choria's own
// machine code, for tests that check our machine definitions and plugin
// packages behave on a real server the way we expect.
package machinetest

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/choria-io/go-choria/aagent/machine"
	"github.com/choria-io/go-choria/aagent/model"
	"github.com/choria-io/go-choria/aagent/watchers"
	archive "github.com/choria-io/go-choria/aagent/watchers/archivewatcher"
	"github.com/choria-io/go-choria/aagent/watchers/execwatcher"
	"github.com/choria-io/go-choria/aagent/watchers/nagioswatcher"
	"github.com/choria-io/go-choria/aagent/watchers/plugin"
	"github.com/choria-io/go-choria/aagent/watchers/pluginswatcher"
	"github.com/choria-io/go-choria/aagent/watchers/timerwatcher"
)

var registerOnce sync.Once

// Watchers are the watcher plugins our machines and the plugin manager
// use, as a Choria server built with the standard plugin set has them.
func Watchers() []*plugin.WatcherPlugin {
	return []*plugin.WatcherPlugin{
		execwatcher.ChoriaPlugin(),
		timerwatcher.ChoriaPlugin(),
		nagioswatcher.ChoriaPlugin(),
		pluginswatcher.ChoriaPlugin(),
		archive.ChoriaPlugin(),
	}
}

// Register makes the watcher plugins known to go-choria's watcher manager,
// which keeps a process wide registry, so it is done once per test binary.
func Register(t testing.TB) {
	t.Helper()

	var err error
	registerOnce.Do(func() {
		for _, p := range Watchers() {
			c, ok := p.Creator.(model.WatcherConstructor)
			if !ok {
				err = fmt.Errorf("%s is not a watcher constructor", p.Name)
				return
			}
			err = watchers.RegisterWatcherPlugin(p.PluginName(), c)
			if err != nil {
				return
			}
		}
	})
	if err != nil {
		t.Fatalf("registering watchers: %v", err)
	}
}

// Constructor finds the go-choria constructor for a watcher type.
func Constructor(wtype string) (model.WatcherConstructor, bool) {
	for _, p := range Watchers() {
		if p.Name == wtype {
			c, ok := p.Creator.(model.WatcherConstructor)
			return c, ok
		}
	}
	return nil, false
}

// Load loads dir/machine.yaml with go-choria's loader, validates it as the
// server does before starting it, and builds every watcher with its real
// constructor so watcher properties are checked too.
func Load(t testing.TB, dir string) (*machine.Machine, *Recorder) {
	t.Helper()

	Register(t)

	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)

	m, err := machine.FromDir(dir, watchers.New(ctx))
	if err != nil {
		t.Fatalf("loading machine from %s: %v", dir, err)
	}

	err = m.Setup()
	if err != nil {
		t.Fatalf("setting up machine from %s: %v", dir, err)
	}

	for _, w := range m.WatcherDefs {
		c, ok := Constructor(w.Type)
		if !ok {
			t.Fatalf("machine %s: no %s watcher plugin for watcher %s", m.Name(), w.Type, w.Name)
		}
		_, err = c.New(m, w.Name, w.StateMatch, w.ForeignStateRequired, w.FailTransition, w.SuccessTransition, w.Interval, w.AnnounceDuration, w.Properties)
		if err != nil {
			t.Fatalf("machine %s: watcher %s: %v", m.Name(), w.Name, err)
		}
	}

	rec := &Recorder{changed: make(chan struct{}, 1)}
	m.SetIdentity("test.example.net")
	m.RegisterNotifier(rec)

	return m, rec
}

// Start runs the machine until the test ends.
func Start(t testing.TB, m *machine.Machine) {
	t.Helper()

	ctx, cancel := context.WithCancel(context.Background())
	wg := &sync.WaitGroup{}
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})

	select {
	case <-m.Start(ctx, wg):
	case <-time.After(10 * time.Second):
		t.Fatalf("machine %s did not start", m.Name())
	}
}

// Recorder is a machine notifier that keeps every log line and transition.
type Recorder struct {
	mu      sync.Mutex
	lines   []string
	changed chan struct{}
}

func (r *Recorder) add(level string, watcher string, format string, args ...any) {
	r.mu.Lock()
	r.lines = append(r.lines, fmt.Sprintf("%s %s: %s", level, watcher, fmt.Sprintf(format, args...)))
	r.mu.Unlock()

	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// Lines returns everything logged so far.
func (r *Recorder) Lines() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.lines...)
}

// WaitFor waits until a logged line contains any of the given strings and
// returns that line, or fails the test after timeout.
func (r *Recorder) WaitFor(t testing.TB, timeout time.Duration, any ...string) string {
	t.Helper()

	deadline := time.After(timeout)
	for {
		for _, l := range r.Lines() {
			for _, s := range any {
				if strings.Contains(l, s) {
					return l
				}
			}
		}

		select {
		case <-r.changed:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatalf("none of %q logged within %v, log:\n%s", any, timeout, strings.Join(r.Lines(), "\n"))
		}
	}
}

// NotifyPostTransition implements machine.NotificationService.
func (r *Recorder) NotifyPostTransition(n *machine.TransitionNotification) error {
	r.add("TRANSITION", n.Machine, "%s", n.String())
	return nil
}

// NotifyWatcherState implements machine.NotificationService.
func (r *Recorder) NotifyWatcherState(w string, s machine.WatcherStateNotification) error {
	return nil
}

// Debugf implements machine.NotificationService.
func (r *Recorder) Debugf(_ machine.InfoSource, w string, format string, args ...any) {
	r.add("DEBUG", w, format, args...)
}

// Infof implements machine.NotificationService.
func (r *Recorder) Infof(_ machine.InfoSource, w string, format string, args ...any) {
	r.add("INFO", w, format, args...)
}

// Warnf implements machine.NotificationService.
func (r *Recorder) Warnf(_ machine.InfoSource, w string, format string, args ...any) {
	r.add("WARN", w, format, args...)
}

// Errorf implements machine.NotificationService.
func (r *Recorder) Errorf(_ machine.InfoSource, w string, format string, args ...any) {
	r.add("ERROR", w, format, args...)
}
