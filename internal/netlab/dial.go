//go:build linux

package netlab

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// DialContext dials from inside the host's network namespace, for health
// checks from the lab's owner. A host name in addr is resolved through the
// host's own HostsFile (the lab has no DNS); the machine's resolver is never
// asked.
func (h *Host) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	addr, err := h.resolve(addr)
	if err != nil {
		return nil, fmt.Errorf("netlab: host %q: dial %s %s: %w", h.spec.Name, network, addr, err)
	}
	var conn net.Conn
	// One literal address: the dial creates its socket on this goroutine
	// (no parallel attempts on other threads), and the socket stays in
	// the namespace afterwards.
	err = h.inNS(func() (err error) {
		var d net.Dialer
		conn, err = d.DialContext(ctx, network, addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("netlab: host %q: dial %s %s: %w", h.spec.Name, network, addr, err)
	}
	return conn, nil
}

// DialAnchor dials a literal address from inside the network namespace of
// the host whose anchor is anchorPID: for the lab's sub-commands that run
// beside its owner (status), which hold no Lab, only its published state.
func DialAnchor(ctx context.Context, anchorPID int, network, addr string) (net.Conn, error) {
	ns, err := openNetNSFile(anchorPID)
	if err != nil {
		return nil, fmt.Errorf("netlab: anchor %d: %w", anchorPID, err)
	}
	defer ns.Close()
	var conn net.Conn
	err = ns.do(func() (err error) {
		var d net.Dialer
		conn, err = d.DialContext(ctx, network, addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("netlab: anchor %d: dial %s %s: %w", anchorPID, network, addr, err)
	}
	return conn, nil
}

// Listen listens inside the host's network namespace: a stand-in service
// (or a file server for the lab) served from the lab's own process. Host
// names in addr are resolved through the host's HostsFile.
func (h *Host) Listen(ctx context.Context, network, addr string) (net.Listener, error) {
	addr, err := h.resolve(addr)
	if err != nil {
		return nil, fmt.Errorf("netlab: host %q: listen %s %s: %w", h.spec.Name, network, addr, err)
	}
	var ln net.Listener
	err = h.inNS(func() error {
		var lc net.ListenConfig
		var err error
		ln, err = lc.Listen(ctx, network, addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("netlab: host %q: listen %s %s: %w", h.spec.Name, network, addr, err)
	}
	return ln, nil
}

func (h *Host) inNS(fn func() error) error {
	ns, err := h.anchor.openNS()
	if err != nil {
		return err
	}
	defer ns.Close()
	return ns.do(fn)
}

// resolve replaces a host name in host:port by its first address in the
// host's HostsFile.
func (h *Host) resolve(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return addr, nil // let the dialer report it, or ":port"
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return addr, nil
	}
	a, ok := lookupHosts(h.spec.HostsFile, host)
	if !ok {
		return "", fmt.Errorf("%q is not in the host's /etc/hosts", host)
	}
	return net.JoinHostPort(a.String(), port), nil
}

// lookupHosts finds name in hosts-file content, case-insensitively, as
// the files NSS module does.
func lookupHosts(content []byte, name string) (netip.Addr, bool) {
	sc := bufio.NewScanner(bytes.NewReader(content))
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		a, err := netip.ParseAddr(f[0])
		if err != nil {
			continue
		}
		for _, n := range f[1:] {
			if strings.EqualFold(n, name) {
				return a, true
			}
		}
	}
	return netip.Addr{}, false
}
