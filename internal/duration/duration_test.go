package duration

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestString(t *testing.T) {
	for in, want := range map[string]string{"1m": "1m", "90s": "1m30s", "43800h": "43800h", "2h30m": "2h30m", "10s": "10s", "250ms": "250ms", "0s": "0s"} {
		var d Duration
		if err := json.Unmarshal([]byte(`"`+in+`"`), &d); err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if got := d.String(); got != want {
			t.Errorf("%s is written %q, want %q", in, got, want)
		}
	}
}

func TestJSON(t *testing.T) {
	var d Duration
	if err := json.Unmarshal([]byte(`"43800h"`), &d); err != nil {
		t.Fatal(err)
	}
	if d.Duration != 43800*time.Hour {
		t.Errorf("got %v", d.Duration)
	}
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `"43800h"` {
		t.Errorf("marshal = %s", b)
	}
	var back Duration
	if err := json.Unmarshal(b, &back); err != nil || back != d {
		t.Errorf("round trip: %v %v", back, err)
	}
	// in a struct, by value: the form the files use
	b, err = json.Marshal(struct{ D Duration }{Of(90 * time.Second)})
	if err != nil || string(b) != `{"D":"1m30s"}` {
		t.Errorf("marshal in a struct = %s, %v", b, err)
	}
}

func TestUnmarshalAccepts(t *testing.T) {
	for in, want := range map[string]time.Duration{"90s": 90 * time.Second, "1.5s": 1500 * time.Millisecond, "-1h": -time.Hour, "0": 0} {
		var d Duration
		if err := json.Unmarshal([]byte(`"`+in+`"`), &d); err != nil || d.Duration != want {
			t.Errorf("%q: %v, %v; want %v", in, d.Duration, err, want)
		}
	}
}

func TestUnmarshalRefuses(t *testing.T) {
	for in, want := range map[string]string{
		`157680000`: "duration must be a string",
		`null`:      "invalid duration",
		`"5y"`:      "invalid duration",
		`"90"`:      "invalid duration",
		`"s"`:       "invalid duration",
		`""`:        "invalid duration",
	} {
		var d Duration
		err := json.Unmarshal([]byte(in), &d)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want one containing %q", in, err, want)
		}
	}
}
