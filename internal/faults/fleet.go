// Package faults checks what a Choria fleet promises its users when parts
// of it fail: brokers killed or cut off, the provisioner or the AAA service
// down. A Fleet drives a running namespace lab as its users and operators
// do, with the real programs: `choria` commands on the client and the
// servers, processes killed and held down, network links cut.
package faults

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kballard/go-shellquote"

	"github.com/reproducible-choria/deployment/internal/lab"
	"github.com/reproducible-choria/deployment/internal/poll"
	"github.com/reproducible-choria/deployment/internal/walkthrough"
	"github.com/reproducible-choria/deployment/topology"
)

// Fleet is a running lab as its users see it.
type Fleet struct {
	Lab      *lab.Running
	Topology *topology.Topology
	exec     walkthrough.LabExecutor
}

// New returns the fleet of a running lab.
func New(r *lab.Running) *Fleet {
	return &Fleet{Lab: r, Topology: r.Plan.Topology, exec: walkthrough.LabExecutor{State: r.State()}}
}

// commandTimeout bounds one command: a client whose broker is cut off
// tries the next after its connect timeout (2 s), and a request waits for
// its replies a few seconds.
const commandTimeout = 30 * time.Second

// On runs a shell command on a host and returns its output; a non-zero
// exit is an error holding the output.
func (f *Fleet) On(ctx context.Context, host, command string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	res, err := f.exec.Run(ctx, host, command)
	if err != nil {
		return res.Output, err
	}
	if res.Exit != 0 {
		return res.Output, fmt.Errorf("%q on %s exited %d: %s", command, host, res.Exit, strings.TrimSpace(res.Output))
	}
	return res.Output, nil
}

// Client runs a shell command on the client.
func (f *Fleet) Client(ctx context.Context, command string) (string, error) {
	return f.On(ctx, f.Topology.MustHost(topology.RoleClient).Name, command)
}

// Login logs the client in as user with `choria login` on a terminal,
// against the AAA service.
func (f *Fleet) Login(ctx context.Context, user string) (string, error) {
	pw, err := f.Lab.Plan.Layout.Credentials().UserPassword(user)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	return f.exec.Login(ctx, f.Topology.MustHost(topology.RoleClient).Name, user, strings.TrimSpace(pw))
}

// Servers is how many servers the fleet has.
func (f *Fleet) Servers() int { return f.Topology.Servers.Count }

var pingReplies = regexp.MustCompile(`(\d+) replies`)

// Answering is how many servers answer `choria ping` now.
func (f *Fleet) Answering(ctx context.Context) (int, error) {
	out, err := f.Client(ctx, "choria ping")
	if err != nil {
		return 0, err
	}
	m := pingReplies.FindStringSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("choria ping printed no count of replies: %s", strings.TrimSpace(out))
	}
	return strconv.Atoi(m[1])
}

// WaitAnswering pings until every server answers, and returns how long
// that took from since. A ping that fails counts as none answering.
func (f *Fleet) WaitAnswering(ctx context.Context, since time.Time, limit time.Duration) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	got, last := 0, error(nil)
	err := poll.Until(ctx, 200*time.Millisecond, func() (bool, error) {
		got, last = f.Answering(ctx)
		return got == f.Servers(), nil
	})
	if err != nil {
		return 0, fmt.Errorf("%d of %d servers answered choria ping within %s of the fault (last error: %v): %w", got, f.Servers(), limit, last, err)
	}
	return time.Since(since), nil
}

// SignedRequest sends an RPC request signed by the AAA service for the
// logged-in user and checks that every server answers it.
func (f *Fleet) SignedRequest(ctx context.Context) error {
	out, err := f.Client(ctx, "choria req rpcutil ping --json")
	if err != nil {
		return err
	}
	var res struct {
		Stats struct {
			OK int `json:"ok"`
		} `json:"request_stats"`
	}
	if i := strings.Index(out, "{"); i < 0 || json.Unmarshal([]byte(out[i:]), &res) != nil {
		return fmt.Errorf("choria req rpcutil ping --json printed no request statistics: %s", out)
	}
	if res.Stats.OK != f.Servers() {
		return fmt.Errorf("%d of %d servers answered a signed request: %s", res.Stats.OK, f.Servers(), out)
	}
	return nil
}

// Submit has server submit a message reliably (spooled until the broker
// takes it) on subject, which the submission stream keeps; returns the
// message's id.
func (f *Fleet) Submit(ctx context.Context, server, subject, body string) (string, error) {
	out, err := f.On(ctx, server, "echo "+shellquote.Join(body)+" | "+shellquote.Join("choria", "tool", "submit", "--config",
		path.Join(f.Topology.Roles[topology.RoleServer].ConfigDir, "server.conf"), "--reliable", subject, "--", "-")+" 2>/dev/null")
	return strings.TrimSpace(out), err
}

// SubmitSubject is the subject a stored submission of subject has.
func SubmitSubject(subject string) string { return "choria.submission.in." + subject }

// Subjects is how many messages a stream holds on each subject.
func (f *Fleet) Subjects(ctx context.Context, stream string) (map[string]int, error) {
	out, err := f.Client(ctx, shellquote.Join("choria", "broker", "stream", "subjects", stream, "--json"))
	if err != nil {
		return nil, err
	}
	counts := map[string]int{}
	if strings.Contains(out, "No subjects found") {
		return counts, nil
	}
	if err := json.Unmarshal([]byte(out), &counts); err != nil {
		return nil, fmt.Errorf("subjects of %s: %w: %s", stream, err, out)
	}
	return counts, nil
}

// Message is a stored message: its subject and a digest of its data.
type Message struct {
	Seq     uint64
	Subject string
	Digest  string
}

// storedMessage is a message as `choria broker stream get --json` prints it.
type storedMessage struct {
	Subject string `json:"subject"`
	Seq     uint64 `json:"seq"`
	Data    []byte `json:"data"`
}

// getMessages runs gets (`choria broker stream get --json` commands) in
// one command on the client and decodes what they print, one message
// each.
func (f *Fleet) getMessages(ctx context.Context, gets []string) ([]storedMessage, error) {
	out, err := f.Client(ctx, strings.Join(gets, "; "))
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(strings.NewReader(out))
	var msgs []storedMessage
	for dec.More() {
		var m storedMessage
		if err := dec.Decode(&m); err != nil {
			return nil, fmt.Errorf("reading stored messages: %w: %s", err, out)
		}
		msgs = append(msgs, m)
	}
	if len(msgs) != len(gets) {
		return nil, fmt.Errorf("%d of %d stored messages read: %s", len(msgs), len(gets), out)
	}
	return msgs, nil
}

// Messages reads the messages at seqs of a stream, in one command; a
// sequence that holds none has a Message with no subject.
func (f *Fleet) Messages(ctx context.Context, stream string, seqs []uint64) ([]Message, error) {
	var gets []string
	for _, s := range seqs {
		gets = append(gets, fmt.Sprintf("{ %s --json 2>/dev/null || echo '{\"seq\": %d}'; }", shellquote.Join("choria", "broker", "stream", "get", stream, strconv.FormatUint(s, 10)), s))
	}
	got, err := f.getMessages(ctx, gets)
	if err != nil {
		return nil, fmt.Errorf("messages of %s: %w", stream, err)
	}
	msgs := make([]Message, 0, len(got))
	for _, m := range got {
		msg := Message{Seq: m.Seq, Subject: m.Subject}
		if m.Subject != "" {
			sum := sha256.Sum256(m.Data)
			msg.Digest = hex.EncodeToString(sum[:])
		}
		msgs = append(msgs, msg)
	}
	return msgs, nil
}

// LatestSeqs is the sequence of the newest message of each of subjects a
// stream holds, in order.
func (f *Fleet) LatestSeqs(ctx context.Context, stream string, subjects []string) ([]uint64, error) {
	var gets []string
	for _, s := range subjects {
		gets = append(gets, shellquote.Join("choria", "broker", "stream", "get", stream, "-S", s, "--json"))
	}
	got, err := f.getMessages(ctx, gets)
	if err != nil {
		return nil, fmt.Errorf("latest messages of %s: %w", stream, err)
	}
	var seqs []uint64
	for _, m := range got {
		seqs = append(seqs, m.Seq)
	}
	slices.Sort(seqs)
	return seqs, nil
}

// StreamInfo is what `choria broker stream info --json` says of a stream's
// cluster: its leader and how current its other replicas are.
type StreamInfo struct {
	State struct {
		Messages uint64 `json:"messages"`
		LastSeq  uint64 `json:"last_seq"`
	} `json:"state"`
	Cluster struct {
		Leader   string `json:"leader"`
		Replicas []struct {
			Name    string `json:"name"`
			Current bool   `json:"current"`
			Offline bool   `json:"offline"`
			Lag     uint64 `json:"lag"`
		} `json:"replicas"`
	} `json:"cluster"`
}

// Info asks the stream's leader about it.
func (f *Fleet) Info(ctx context.Context, stream string) (*StreamInfo, error) {
	out, err := f.Client(ctx, shellquote.Join("choria", "broker", "stream", "info", stream, "--json"))
	if err != nil {
		return nil, err
	}
	var si StreamInfo
	if err := json.Unmarshal([]byte(out), &si); err != nil {
		return nil, fmt.Errorf("stream info %s: %w: %s", stream, err, out)
	}
	return &si, nil
}

// Current tells whether every replica of the stream is current, with the
// one named among them (or leading).
func (si *StreamInfo) Current(broker string) bool {
	seen := si.Cluster.Leader == broker
	for _, r := range si.Cluster.Replicas {
		if !r.Current || r.Offline || r.Lag != 0 {
			return false
		}
		seen = seen || r.Name == broker
	}
	return seen
}

// ConnectedTo counts the servers connected to each broker, by their status
// files.
func (f *Fleet) ConnectedTo() map[string]int {
	counts := map[string]int{}
	for _, h := range f.Lab.State().Hosts {
		if h.Role != topology.RoleServer {
			continue
		}
		if b := lab.ConnectedBroker(h); b != "" {
			counts[b]++
		}
	}
	return counts
}
