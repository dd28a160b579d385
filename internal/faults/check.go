package faults

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/reproducible-choria/deployment/internal/lab"
	"github.com/reproducible-choria/deployment/internal/poll"
	"github.com/reproducible-choria/deployment/topology"
)

// Stored is what the fleet's streams hold at one moment, to be found
// again after a fault: the newest registration of every server (older
// ones make way for newer ones by the stream's per-subject limit, within
// a minute; the replicator's heartbeats, more often, are left out) and
// every submission.
type Stored struct {
	Registration []Message
	Submissions  map[string]int
}

// Count is how many messages Stored holds.
func (s *Stored) Count() int {
	n := len(s.Registration)
	for _, c := range s.Submissions {
		n += c
	}
	return n
}

// Snapshot records what the registration and submission streams hold.
func (f *Fleet) Snapshot(ctx context.Context) (*Stored, error) {
	t := f.Topology
	var subjects []string
	for i := 1; i <= f.Servers(); i++ {
		subjects = append(subjects, RegistrationSubject(t, t.FQDN(t.ServerName(i))))
	}
	seqs, err := f.LatestSeqs(ctx, t.Streams.Registration.Name, subjects)
	if err != nil {
		return nil, err
	}
	reg, err := f.Messages(ctx, t.Streams.Registration.Name, seqs)
	if err != nil {
		return nil, err
	}
	for _, m := range reg {
		if m.Subject == "" {
			return nil, fmt.Errorf("%s %d went while it was read", t.Streams.Registration.Name, m.Seq)
		}
	}
	subs, err := f.Subjects(ctx, t.Streams.Submission.Name)
	if err != nil {
		return nil, err
	}
	return &Stored{Registration: reg, Submissions: subs}, nil
}

// RegistrationSubject is where the broker's registration adapter stores a
// server's registrations: the stream's subject with the server's identity
// for its wildcard.
func RegistrationSubject(t *topology.Topology, identity string) string {
	return strings.TrimSuffix(t.Streams.Registration.Subjects[0], ">") + identity
}

// Lost lists what of s the streams no longer hold: a registration message
// whose sequence now holds another (or nothing), a submission subject
// holding fewer messages than before.
func (f *Fleet) Lost(ctx context.Context, s *Stored) ([]string, error) {
	missing, err := f.missing(ctx, s)
	if err != nil {
		return nil, err
	}
	return missing.describe(f.Topology), nil
}

// missing is the part of s the streams do not hold now.
func (f *Fleet) missing(ctx context.Context, s *Stored) (*Stored, error) {
	t := f.Topology
	var seqs []uint64
	for _, m := range s.Registration {
		seqs = append(seqs, m.Seq)
	}
	missing := &Stored{Submissions: map[string]int{}}
	if len(seqs) > 0 {
		now, err := f.Messages(ctx, t.Streams.Registration.Name, seqs)
		if err != nil {
			return nil, err
		}
		for i, m := range s.Registration {
			if now[i] != m {
				missing.Registration = append(missing.Registration, m)
			}
		}
	}
	if len(s.Submissions) > 0 {
		subs, err := f.Subjects(ctx, t.Streams.Submission.Name)
		if err != nil {
			return nil, err
		}
		for subj, n := range s.Submissions {
			if subs[subj] < n {
				missing.Submissions[subj] = n
			}
		}
	}
	return missing, nil
}

// describe names every message of s.
func (s *Stored) describe(t *topology.Topology) []string {
	var names []string
	for _, m := range s.Registration {
		names = append(names, fmt.Sprintf("%s %d (%s)", t.Streams.Registration.Name, m.Seq, m.Subject))
	}
	for _, subj := range slices.Sorted(maps.Keys(s.Submissions)) {
		names = append(names, fmt.Sprintf("%s %s (%d messages)", t.Streams.Submission.Name, subj, s.Submissions[subj]))
	}
	return names
}

// WaitNothingLost waits until everything of s has been read again (reads
// fail while a stream has no leader, or a command tries a broker that is
// gone first), asking each time only for what was not read yet, and
// returns how long that took from since.
func (f *Fleet) WaitNothingLost(ctx context.Context, s *Stored, since time.Time, limit time.Duration) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	pending := s
	err := poll.Until(ctx, 500*time.Millisecond, func() (bool, error) {
		missing, err := f.missing(ctx, pending)
		if err == nil {
			pending = missing
		}
		return pending.Count() == 0, nil
	})
	if err != nil {
		return 0, fmt.Errorf("stored messages not read within %s: %s: %w", limit, strings.Join(pending.describe(f.Topology), ", "), err)
	}
	return time.Since(since), nil
}

// SubmitAll has every server submit one message on subject prefix.SERVER,
// and returns the stored subjects to expect.
func (f *Fleet) SubmitAll(ctx context.Context, prefix string) ([]string, error) {
	var subjects []string
	for i := 1; i <= f.Servers(); i++ {
		server := f.Topology.ServerName(i)
		subject := prefix + "." + server
		if _, err := f.Submit(ctx, server, subject, server); err != nil {
			return nil, err
		}
		subjects = append(subjects, SubmitSubject(subject))
	}
	return subjects, nil
}

// WaitDelivered waits until the submission stream holds each subject,
// and returns how long that took from since; it fails at once when one
// holds more than one message (delivered twice).
func (f *Fleet) WaitDelivered(ctx context.Context, subjects []string, since time.Time, limit time.Duration) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	var missing []string
	err := poll.Until(ctx, 500*time.Millisecond, func() (bool, error) {
		got, err := f.Subjects(ctx, f.Topology.Streams.Submission.Name)
		if err != nil {
			return false, nil // the stream's leader may be moving
		}
		missing = missing[:0]
		for _, s := range subjects {
			switch n := got[s]; {
			case n > 1:
				return false, fmt.Errorf("%s holds %d messages: a submission was delivered %d times", s, n, n)
			case n == 0:
				missing = append(missing, s)
			}
		}
		return len(missing) == 0, nil
	})
	if err != nil {
		return 0, fmt.Errorf("submissions not delivered (%s): %w", strings.Join(missing, ", "), err)
	}
	return time.Since(since), nil
}

// WaitAgreed waits until every broker holds the same replica of each
// stream: one leader, known to all, and the same last sequence and
// message count (no split brain). It returns how long that took from since.
func (f *Fleet) WaitAgreed(ctx context.Context, since time.Time, limit time.Duration, streams ...string) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	var last string
	err := poll.Until(ctx, 500*time.Millisecond, func() (bool, error) {
		views, err := f.Lab.StreamViews(ctx, streams...)
		if err != nil {
			last = err.Error()
			return false, nil
		}
		last = Disagreement(views, streams, len(f.Topology.BrokerHosts()))
		return last == "", nil
	})
	if err != nil {
		return 0, fmt.Errorf("the brokers' replicas did not agree within %s: %s: %w", limit, last, err)
	}
	return time.Since(since), nil
}

// Disagreement says how the brokers' replicas of the streams differ, or
// is empty when each stream has a replica on every broker, all naming the
// same leader, with the same last sequence and message count.
func Disagreement(views []lab.StreamView, streams []string, brokers int) string {
	for _, s := range streams {
		var of []lab.StreamView
		for _, v := range views {
			if v.Stream == s {
				of = append(of, v)
			}
		}
		if len(of) != brokers {
			return fmt.Sprintf("%s has %d replicas, not %d", s, len(of), brokers)
		}
		for _, v := range of[1:] {
			switch {
			case v.Leader == "" || v.Leader != of[0].Leader:
				return fmt.Sprintf("%s: %s names leader %q, %s %q", s, of[0].Broker, of[0].Leader, v.Broker, v.Leader)
			case v.LastSeq != of[0].LastSeq || v.Messages != of[0].Messages:
				return fmt.Sprintf("%s: %s holds %d messages to sequence %d, %s %d to %d", s, of[0].Broker, of[0].Messages, of[0].LastSeq, v.Broker, v.Messages, v.LastSeq)
			}
		}
	}
	return ""
}

// WaitCurrent waits until the stream's leader reports every replica
// current, the broker's among them, and returns how long that took from
// since.
func (f *Fleet) WaitCurrent(ctx context.Context, stream, brokerFQDN string, since time.Time, limit time.Duration) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	var last *StreamInfo
	err := poll.Until(ctx, 500*time.Millisecond, func() (bool, error) {
		si, err := f.Info(ctx, stream)
		if err != nil {
			return false, nil
		}
		last = si
		return si.Current(brokerFQDN), nil
	})
	if err != nil {
		return 0, fmt.Errorf("%s's replica on %s is not current within %s (last stream info: %+v): %w", stream, brokerFQDN, limit, last, err)
	}
	return time.Since(since), nil
}

// Victim is the broker most servers are connected to (the first of them
// on a tie): the fault that takes it moves the most servers.
func (f *Fleet) Victim() (name string, servers int) {
	counts := f.ConnectedTo()
	for _, b := range f.Topology.BrokerHosts() {
		if n := counts[f.Topology.FQDN(b.Name)]; name == "" || n > servers {
			name, servers = b.Name, n
		}
	}
	return name, servers
}
