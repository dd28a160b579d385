package poll

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestUntilDone(t *testing.T) {
	calls := 0
	err := Until(context.Background(), time.Millisecond, func() (bool, error) {
		calls++
		return calls == 3, nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("Until returned %v after %d calls, want nil after 3", err, calls)
	}
}

func TestUntilAsksAtOnce(t *testing.T) {
	start := time.Now()
	if err := Until(context.Background(), time.Hour, func() (bool, error) { return true, nil }); err != nil {
		t.Fatal(err)
	}
	if time.Since(start) > time.Second {
		t.Fatal("Until waited before asking")
	}
}

func TestUntilFails(t *testing.T) {
	boom := errors.New("boom")
	calls := 0
	err := Until(context.Background(), time.Millisecond, func() (bool, error) {
		calls++
		return false, boom
	})
	if !errors.Is(err, boom) || calls != 1 {
		t.Fatalf("Until returned %v after %d calls, want boom after 1", err, calls)
	}
}

func TestUntilEndsWithTheContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	calls := 0
	err := Until(ctx, 5*time.Millisecond, func() (bool, error) { calls++; return false, nil })
	if !errors.Is(err, context.DeadlineExceeded) || calls < 2 {
		t.Fatalf("Until returned %v after %d calls, want the deadline after several", err, calls)
	}

	why := errors.New("the lab went down")
	ctx, cancelCause := context.WithCancelCause(context.Background())
	cancelCause(why)
	if err := Until(ctx, time.Hour, func() (bool, error) { return false, nil }); !errors.Is(err, why) {
		t.Fatalf("Until returned %v, want the context's cause", err)
	}
}

func TestSleep(t *testing.T) {
	if err := Sleep(context.Background(), time.Millisecond); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	if err := Sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) || time.Since(start) > time.Second {
		t.Fatalf("Sleep on an ended context returned %v after %v", err, time.Since(start))
	}
}
