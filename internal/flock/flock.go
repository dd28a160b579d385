// Package flock takes exclusive advisory locks on files, waiting for other
// holders, for work that one process at a time may do on a machine.
package flock

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/reproducible-choria/deployment/internal/poll"
)

// Acquire takes an exclusive lock on path (created if missing), waiting
// while another process holds it: waiting is called once, when it must
// wait. The lock lasts until release is called or the process ends.
func Acquire(ctx context.Context, path string, waiting func()) (release func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening the lock %s: %w", path, err)
	}
	said := false
	err = poll.Until(ctx, 500*time.Millisecond, func() (bool, error) {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return true, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return false, fmt.Errorf("locking %s: %w", path, err)
		}
		if !said {
			waiting()
			said = true
		}
		return false, nil
	})
	if err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil
}
