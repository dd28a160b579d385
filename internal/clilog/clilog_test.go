package clilog

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestLinesForAPerson(t *testing.T) {
	var buf bytes.Buffer
	log := New(&buf, "choria-lab", slog.LevelInfo)
	log.Info("network up", "hosts", 17, "took", 1234567*time.Microsecond)
	log.Warn("broker died", "status", "exit status 1")
	log.Error("bring-up failed", "err", errors.New("no broker"))
	log.Debug("hidden at info")
	log.With("host", "server1").WithGroup("proc").Info("started", "name", "server", "argv", "")
	assert.Equal(t, `choria-lab: network up hosts=17 took=1.235s
choria-lab: warning: broker died status="exit status 1"
choria-lab: error: bring-up failed err="no broker"
choria-lab: started host=server1 proc.name=server proc.argv=""
`, buf.String())
}

func TestDebugLevel(t *testing.T) {
	var buf bytes.Buffer
	New(&buf, "x", Level(true)).Debug("shown", slog.Group("g", "a", 1))
	assert.Equal(t, "x: debug: shown g.a=1\n", buf.String())
	buf.Reset()
	New(&buf, "x", Level(false)).Debug("not shown")
	assert.Empty(t, buf.String())
}

// Lines from many goroutines, through derived loggers too, never interleave.
func TestConcurrentLinesStayWhole(t *testing.T) {
	var buf bytes.Buffer
	log := New(&buf, "p", slog.LevelInfo)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := log.With("worker", i)
			for range 50 {
				l.Info(strings.Repeat("x", 100))
			}
		}()
	}
	wg.Wait()
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	assert.Len(t, lines, 1000)
	for _, l := range lines {
		assert.Regexp(t, `^p: x{100} worker=\d+$`, l)
	}
}
