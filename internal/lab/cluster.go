package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/reproducible-choria/deployment/internal/netlab"
	"github.com/reproducible-choria/deployment/internal/poll"
	"github.com/reproducible-choria/deployment/topology"
)

// BrokerView is one broker's view of its cluster, as its NATS monitoring
// port (the broker's stats port) reports it.
type BrokerView struct {
	Broker string
	// Routes are the names of the brokers it has a route to.
	Routes []string
	// MetaLeader is the JetStream meta leader it knows, empty while none.
	MetaLeader string
	// Err says why the broker could not be asked.
	Err error
}

// ClusterViews asks every broker of the running lab for its routes and
// JetStream meta leader, from inside its host (the monitoring port
// listens on the host's loopback only).
func ClusterViews(ctx context.Context, st *State) ([]BrokerView, error) {
	t, err := st.Topology()
	if err != nil {
		return nil, err
	}
	var views []BrokerView
	for _, h := range st.Hosts {
		if h.Role != topology.RoleBroker {
			continue
		}
		anchor := h.AnchorPID
		client := monitorClient(func(ctx context.Context, network, addr string) (net.Conn, error) {
			return netlab.DialAnchor(ctx, anchor, network, addr)
		}, t.Ports.BrokerStats)
		v := BrokerView{Broker: h.Name}
		v.Routes, v.MetaLeader, v.Err = brokerView(ctx, client)
		views = append(views, v)
	}
	return views, nil
}

// monitorClient asks a broker's monitoring port, on its host's loopback,
// through dial (which dials inside the host).
func monitorClient(dial func(ctx context.Context, network, addr string) (net.Conn, error), port int) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return dial(ctx, network, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		},
		DisableKeepAlives: true,
	}}
}

func brokerView(ctx context.Context, client *http.Client) (routes []string, leader string, err error) {
	var rz struct {
		Routes []struct {
			RemoteName string `json:"remote_name"`
		} `json:"routes"`
	}
	if err := getJSON(ctx, client, "/routez", &rz); err != nil {
		return nil, "", err
	}
	for _, r := range rz.Routes {
		if !slices.Contains(routes, r.RemoteName) {
			routes = append(routes, r.RemoteName)
		}
	}
	slices.Sort(routes)
	var jz struct {
		Meta *struct {
			Leader string `json:"leader"`
		} `json:"meta_cluster"`
	}
	if err := getJSON(ctx, client, "/jsz", &jz); err != nil {
		return routes, "", err
	}
	if jz.Meta != nil {
		leader = jz.Meta.Leader
	}
	return routes, leader, nil
}

// getJSON reads a monitoring endpoint; the host in its URL is never
// resolved, the client dials the broker's loopback.
func getJSON(ctx context.Context, c *http.Client, path string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://broker-monitor"+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("asking the broker's monitoring port for %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("the broker's monitoring port answered %s for %s", resp.Status, path)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return fmt.Errorf("reading %s from the broker's monitoring port: %w", path, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decoding %s from the broker's monitoring port: %w", path, err)
	}
	return nil
}

// ConnectedBroker is the FQDN of the broker a server says (in its status
// file) it is connected to; empty when it says none or cannot be read.
func ConnectedBroker(server HostState) string {
	s, err := readServerStatus(server.StatusFile)
	if err != nil || s.ConnectedServer == "" {
		return ""
	}
	u, err := url.Parse(s.ConnectedServer)
	if err != nil {
		return ""
	}
	return u.Hostname()
}

// WriteCluster prints each broker's routes, the JetStream meta leader it
// knows, and how many servers are connected to it.
func WriteCluster(w io.Writer, st *State, views []BrokerView) {
	connected := map[string]int{}
	for _, h := range st.Hosts {
		if b := ConnectedBroker(h); h.Role == topology.RoleServer && b != "" {
			connected[b]++
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "BROKER\tROUTES TO\tMETA LEADER\tSERVERS")
	for _, v := range views {
		fqdn := v.Broker
		if h, err := st.Host(v.Broker); err == nil {
			fqdn = h.FQDN
		}
		if v.Err != nil {
			fmt.Fprintf(tw, "%s\t%s\t\t%d\n", v.Broker, v.Err, connected[fqdn])
			continue
		}
		routes, leader := strings.Join(v.Routes, ", "), v.MetaLeader
		if routes == "" {
			routes = "none"
		}
		if leader == "" {
			leader = "none"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\n", v.Broker, routes, leader, connected[fqdn])
	}
	tw.Flush()
}

// StreamView is one broker's replica of a stream, as its monitoring port
// reports it.
type StreamView struct {
	Broker, Stream string
	// Leader is the stream's leader as this broker knows it.
	Leader                      string
	Messages, FirstSeq, LastSeq uint64
	// Peers are the other replicas, as this broker sees them (the leader
	// alone knows whether they are current).
	Peers []PeerView
}

// PeerView is a replica of a stream as another broker sees it.
type PeerView struct {
	Name    string `json:"name"`
	Current bool   `json:"current"`
	Offline bool   `json:"offline"`
	Lag     uint64 `json:"lag"`
}

// StreamViews asks every broker for its replicas of the streams of the
// choria account (all of them when none are named).
func (r *Running) StreamViews(ctx context.Context, streams ...string) ([]StreamView, error) {
	t := r.Plan.Topology
	var views []StreamView
	for _, b := range t.BrokerHosts() {
		h, err := r.netHost(b.Name)
		if err != nil {
			return nil, err
		}
		details, err := streamDetails(ctx, monitorClient(h.DialContext, t.Ports.BrokerStats))
		if err != nil {
			return nil, fmt.Errorf("broker %s: %w", b.Name, err)
		}
		for _, d := range details {
			if len(streams) > 0 && !slices.Contains(streams, d.Name) {
				continue
			}
			v := StreamView{Broker: b.Name, Stream: d.Name, Messages: d.State.Messages, FirstSeq: d.State.FirstSeq, LastSeq: d.State.LastSeq}
			if d.Cluster != nil {
				v.Leader, v.Peers = d.Cluster.Leader, d.Cluster.Replicas
			}
			views = append(views, v)
		}
	}
	return views, nil
}

// streamDetail is the part of a stream's monitoring report the lab reads.
type streamDetail struct {
	Name    string `json:"name"`
	Cluster *struct {
		Leader   string     `json:"leader"`
		Replicas []PeerView `json:"replicas"`
	} `json:"cluster"`
	State struct {
		Messages uint64 `json:"messages"`
		FirstSeq uint64 `json:"first_seq"`
		LastSeq  uint64 `json:"last_seq"`
	} `json:"state"`
}

// streamDetails lists the streams a broker holds a replica of, in the
// choria account.
func streamDetails(ctx context.Context, c *http.Client) ([]streamDetail, error) {
	var jz struct {
		Accounts []struct {
			Name    string         `json:"name"`
			Streams []streamDetail `json:"stream_detail"`
		} `json:"account_details"`
	}
	if err := getJSON(ctx, c, "/jsz?accounts=true&streams=true", &jz); err != nil {
		return nil, err
	}
	for _, a := range jz.Accounts {
		if a.Name == choriaAccount {
			return a.Streams, nil
		}
	}
	return nil, nil
}

// choriaAccount is the broker's account of the fleet, which holds its streams.
const choriaAccount = "choria"

// systemStreams are the streams a broker makes for itself, KV_CHORIA_LEADER_ELECTION last.
var systemStreams = []string{"CHORIA_EVENTS", "CHORIA_MACHINE", "CHORIA_STREAM_ADVISORIES", "KV_CHORIA_LEADER_ELECTION"}

// waitSystemStreams waits until the brokers have made their system
// streams: a cluster's brokers make them only 10-70 s after they start
// (see bootstrap's broker configuration), and the tour and the fault
// tests need them.
func (r *Running) waitSystemStreams(ctx context.Context) error {
	t := r.Plan.Topology
	b := t.BrokerHosts()[0]
	h, err := r.netHost(b.Name)
	if err != nil {
		return err
	}
	client := monitorClient(h.DialContext, t.Ports.BrokerStats)
	missing := systemStreams
	var last error
	err = poll.Until(ctx, 500*time.Millisecond, func() (bool, error) {
		details, err := streamDetails(ctx, client)
		if last = err; err != nil {
			return false, nil // not serving its monitoring port yet
		}
		missing = slices.DeleteFunc(slices.Clone(systemStreams), func(s string) bool {
			return slices.ContainsFunc(details, func(d streamDetail) bool { return d.Name == s })
		})
		return len(missing) == 0, nil
	})
	switch {
	case err == nil:
		return nil
	case last != nil:
		return fmt.Errorf("the brokers' system streams: %w", last)
	}
	return fmt.Errorf("the brokers did not make their system streams %s: %w (see %s)", strings.Join(missing, ", "), err, r.Plan.Layout.ProcessLog(b.Name, "broker"))
}
