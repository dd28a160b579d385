// Package poll waits for what gives no signal when it happens (a port that
// opens, a process that leaves, a lock another process lets go) by asking
// again at an interval.
package poll

import (
	"context"
	"time"
)

// Until calls cond at once and then every interval until cond reports done
// (Until returns nil) or fails (Until returns its error). When ctx ends
// first, Until returns context.Cause(ctx): bound the wait with
// context.WithTimeout, and say what was waited for when it returns an
// error.
func Until(ctx context.Context, interval time.Duration, cond func() (done bool, err error)) error {
	for {
		done, err := cond()
		if err != nil {
			return err
		}
		if done {
			return nil
		}
		if err := Sleep(ctx, interval); err != nil {
			return err
		}
	}
}

// Sleep waits for d, or until ctx ends, when it returns context.Cause(ctx).
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}
