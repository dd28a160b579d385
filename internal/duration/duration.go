// Package duration is the one JSON form of a time.Duration in this
// repository's files (the topology, the provisioning helper's
// configuration, the walkthrough scenario): a Go duration string such as
// "90s" or "43800h". It imports nothing of the repository, so the
// provisioning helper, which starts for every request, can use it without
// the topology's dependencies.
package duration

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Duration is a time.Duration written in JSON as a Go duration string.
type Duration struct{ time.Duration }

// Of makes a Duration of d.
func Of(d time.Duration) Duration { return Duration{d} }

// String formats the duration without zero units ("1m", not "1m0s"), as
// people write them in the upstream programs' configuration files.
func (d Duration) String() string {
	s := d.Duration.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// MarshalJSON writes the duration as String does.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON accepts any string time.ParseDuration accepts, negative
// ones too (whoever reads the file judges the value); a bare number, whose
// unit would be ambiguous, is an error.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string such as \"90s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("invalid duration: %w", err)
	}
	d.Duration = v
	return nil
}
