package lab

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/creack/pty"

	"github.com/reproducible-choria/deployment/internal/netlab"
)

// Login runs `choria login` on a host of the running lab as a person would,
// answering its prompts on a terminal, and returns what it printed.
func Login(ctx context.Context, st *State, host, user, password string) (string, error) {
	h, err := st.Host(host)
	if err != nil {
		return "", err
	}
	cmd := netlab.EnterCommand(h.AnchorPID, []string{"choria", "login"})
	cmd.Env = append(append([]string(nil), st.Env...), "TERM=dumb")
	tty, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 40, Cols: 120})
	if err != nil {
		return "", fmt.Errorf("starting choria login on %s: %w", host, err)
	}
	defer tty.Close()

	var (
		mu   sync.Mutex
		out  bytes.Buffer
		last = time.Now() // when choria login last printed or asked something
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			n, err := tty.Read(buf)
			// survey asks the terminal where the cursor is and waits for
			// the answer a real terminal gives
			for range bytes.Count(buf[:n], []byte(cursorQuery)) {
				_, _ = io.WriteString(tty, cursorReply)
			}
			mu.Lock()
			out.Write(buf[:n])
			last = time.Now()
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	printed := func() string {
		mu.Lock()
		defer mu.Unlock()
		return out.String()
	}
	quietFor := func() time.Duration {
		mu.Lock()
		defer mu.Unlock()
		return time.Since(last)
	}
	// waitFor waits until choria login has printed s after offset and then
	// stays quiet for loginSettle: survey reads the answer to its cursor
	// query with a buffered reader, so an answer typed while it is still
	// querying is read along with the reply and dropped.
	waitFor := func(s string, offset int) error {
		for !strings.Contains(printed()[offset:], s) || quietFor() < loginSettle {
			select {
			case <-ctx.Done():
				return fmt.Errorf("choria login did not prompt %q: %w; it printed %q", s, ctx.Err(), printed())
			case <-done:
				return fmt.Errorf("choria login ended before prompting %q; it printed %q", s, printed())
			case <-time.After(20 * time.Millisecond):
			}
		}
		return nil
	}
	fail := func(err error) (string, error) {
		// the group: nsenter and the choria login it forked into the host
		// (pty.Start made nsenter a session and group leader)
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		<-done
		return printed(), err
	}

	if err := waitFor("Username", 0); err != nil {
		return fail(err)
	}
	// survey reads a line per prompt; answer only once it asks. The
	// password prompt is looked for in what comes after the answer, which
	// may arrive before WriteString returns.
	answered := len(printed())
	if _, err := io.WriteString(tty, user+"\r"); err != nil {
		return fail(err)
	}
	if err := waitFor("Password", answered); err != nil {
		return fail(err)
	}
	if _, err := io.WriteString(tty, password+"\r"); err != nil {
		return fail(err)
	}
	werr := cmd.Wait()
	<-done
	if werr != nil {
		return printed(), fmt.Errorf("choria login as %s failed: %w; it printed %q", user, werr, strings.TrimSpace(lastLine(printed())))
	}
	return printed(), nil
}

// loginSettle is how long choria login must be quiet before an answer is
// typed: the expect script of the VM test waits a second; survey's queries
// come within milliseconds of each other.
const loginSettle = 300 * time.Millisecond

// The ANSI device status report a prompt library sends, and a terminal's answer.
const (
	cursorQuery = "\x1b[6n"
	cursorReply = "\x1b[1;1R"
)

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
