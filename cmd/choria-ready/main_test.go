package main

import (
	"net"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestReady(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	// a port nothing listens on: one just closed
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	shut := closed.Addr().String()
	closed.Close()

	var out strings.Builder
	assert.Equal(t, 0, run([]string{l.Addr().String()}, &out), out.String())

	out.Reset()
	assert.Equal(t, 1, run([]string{l.Addr().String(), shut}, &out))
	assert.Contains(t, out.String(), shut)

	out.Reset()
	assert.Equal(t, 2, run(nil, &out))
	assert.Equal(t, 2, run([]string{"4222"}, &out), "a port without a host is a usage error")
}
