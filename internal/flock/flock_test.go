package flock

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestAcquireWaitsForTheHolder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock")
	release, err := Acquire(context.Background(), path, func() { t.Error("the first taker waited") })
	require.NoError(t, err)

	// a second open file description conflicts, as another process would
	waited := 0
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	_, err = Acquire(ctx, path, func() { waited++ })
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Equal(t, 1, waited, "said once that it waits")

	release()
	again, err := Acquire(context.Background(), path, func() { t.Error("waited for a released lock") })
	require.NoError(t, err)
	again()
}
