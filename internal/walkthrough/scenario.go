// Package walkthrough runs the shared walkthrough scenario
// (walkthrough/scenario.json) against a running lab: one line per step,
// a JSON report, and on failure the command, what was expected and what it
// printed.
package walkthrough

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/reproducible-choria/deployment/internal/duration"
	scenario "github.com/reproducible-choria/deployment/walkthrough"
)

// Scenario is the whole walkthrough.
type Scenario struct {
	Description []string `json:"description"`
	Steps       []Step   `json:"steps"`
}

// Step is one command or login on one host, with what it must print.
type Step struct {
	Name     string            `json:"name"`
	Items    []int             `json:"items,omitempty"`
	Host     string            `json:"host"`
	Note     string            `json:"note,omitempty"`
	Command  string            `json:"command,omitempty"`
	Login    *Login            `json:"login,omitempty"`
	Each     string            `json:"each,omitempty"`
	Expect   Expect            `json:"expect"`
	Capture  map[string]string `json:"capture,omitempty"`
	Verify   map[string]string `json:"verify,omitempty"`
	Deadline duration.Duration `json:"deadline,omitempty"`
	Interval duration.Duration `json:"interval,omitempty"`
	Timeout  duration.Duration `json:"timeout,omitempty"`
}

// Login is a `choria login` on the step's host.
type Login struct {
	User     string `json:"user"`
	Password string `json:"password"`
	// Expect is LoginSuccess or LoginRefused.
	Expect string `json:"expect"`
}

// Login outcomes.
const (
	LoginSuccess = "success"
	LoginRefused = "refused"
)

// EachServers expands a step into one per server.
const EachServers = "servers"

// Expect is what a step's output and exit status must satisfy.
type Expect struct {
	Exit        Exit     `json:"exit"`
	Contains    []string `json:"contains,omitempty"`
	NotContains []string `json:"not_contains,omitempty"`
	Regex       []string `json:"regex,omitempty"`
	NotRegex    []string `json:"not_regex,omitempty"`
	Count       []Count  `json:"count,omitempty"`
}

// Count bounds the number of non-overlapping matches of Regex. Equals and
// Min are numbers after variable substitution ("${servers.count}").
type Count struct {
	Regex  string `json:"regex"`
	Equals string `json:"equals,omitempty"`
	Min    string `json:"min,omitempty"`
}

// Exit is the expected exit status: a number, "nonzero" or "any"; the zero
// value expects 0.
type Exit struct {
	Any, NonZero bool
	Code         int
}

func (e *Exit) UnmarshalJSON(b []byte) error {
	var n int
	if err := json.Unmarshal(b, &n); err == nil {
		*e = Exit{Code: n}
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("exit must be a number, \"nonzero\" or \"any\", not %s", b)
	}
	switch s {
	case "any":
		*e = Exit{Any: true}
	case "nonzero":
		*e = Exit{NonZero: true}
	default:
		return fmt.Errorf("exit must be a number, \"nonzero\" or \"any\", not %q", s)
	}
	return nil
}

func (e Exit) MarshalJSON() ([]byte, error) {
	switch {
	case e.Any:
		return json.Marshal("any")
	case e.NonZero:
		return json.Marshal("nonzero")
	}
	return json.Marshal(e.Code)
}

func (e Exit) String() string {
	switch {
	case e.Any:
		return "any exit status"
	case e.NonZero:
		return "a non-zero exit status"
	}
	return fmt.Sprintf("exit status %d", e.Code)
}

// Matches tells whether status satisfies e.
func (e Exit) Matches(status int) bool {
	switch {
	case e.Any:
		return true
	case e.NonZero:
		return status != 0
	}
	return status == e.Code
}

// Verification kinds the runner implements in code.
const (
	VerifySubmissionSignature = "submission-signature"
	VerifyGoPackage           = "go-package"
)

var verifyParams = map[string][]string{
	VerifySubmissionSignature: {"msg_id", "identity"},
	VerifyGoPackage:           {"require", "package"},
}

// Default returns the embedded scenario, walkthrough/scenario.json.
func Default() (*Scenario, error) {
	return Parse(scenario.JSON())
}

// Parse decodes and validates a scenario; unknown fields are errors, so a
// misspelt expectation cannot pass silently.
func Parse(b []byte) (*Scenario, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var s Scenario
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("decoding the walkthrough scenario: %w", err)
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return &s, nil
}

var stepNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)

// Validate checks what can be checked before any variable is known: names,
// one action per step, outcomes, kinds, and that every pattern compiles
// with its variables standing in as plain words.
func (s *Scenario) Validate() error {
	if len(s.Steps) == 0 {
		return errors.New("walkthrough scenario: no steps")
	}
	seen := map[string]bool{}
	var errs []error
	for i, st := range s.Steps {
		bad := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("walkthrough scenario: step %d (%s): %s", i+1, st.Name, fmt.Sprintf(format, args...)))
		}
		if !stepNameRE.MatchString(st.Name) {
			bad("name must be lower-case letters, digits and dashes")
		}
		if seen[st.Name] {
			bad("name used twice")
		}
		seen[st.Name] = true
		if st.Host == "" {
			bad("no host")
		}
		if (st.Command == "") == (st.Login == nil) {
			bad("needs exactly one of command and login")
		}
		if st.Login != nil {
			if st.Login.User == "" {
				bad("login has no user")
			}
			if st.Login.Expect != LoginSuccess && st.Login.Expect != LoginRefused {
				bad("login expect must be %q or %q, not %q", LoginSuccess, LoginRefused, st.Login.Expect)
			}
			if st.Expect.Exit != (Exit{}) {
				bad("a login's outcome is login.expect, not expect.exit")
			}
		}
		if st.Each != "" && st.Each != EachServers {
			bad("each must be %q", EachServers)
		}
		if st.Each == "" && (strings.Contains(st.Host+st.Command, "${item") || mapMentions(st.Capture, "${item")) {
			bad("uses ${item} without each")
		}
		for _, p := range st.patterns() {
			if _, err := compile(placeholders(p)); err != nil {
				bad("pattern %q: %v", p, err)
			}
		}
		for name, p := range st.Capture {
			re, err := compile(placeholders(p))
			if err == nil && re.NumSubexp() < 1 {
				bad("capture %s: pattern %q has no group", name, p)
			}
		}
		for _, c := range st.Expect.Count {
			if (c.Equals == "") == (c.Min == "") {
				bad("count %q needs exactly one of equals and min", c.Regex)
			}
		}
		if st.Verify != nil {
			params, ok := verifyParams[st.Verify["kind"]]
			if !ok {
				bad("verify kind %q is not one of %s, %s", st.Verify["kind"], VerifySubmissionSignature, VerifyGoPackage)
			}
			for _, p := range params {
				if st.Verify[p] == "" {
					bad("verify %s needs %s", st.Verify["kind"], p)
				}
			}
		}
		for field, d := range map[string]duration.Duration{"deadline": st.Deadline, "interval": st.Interval, "timeout": st.Timeout} {
			if d.Duration < 0 {
				bad("%s %q is negative", field, d)
			}
		}
		if st.Deadline.Duration == 0 && st.Interval.Duration != 0 {
			bad("interval without deadline")
		}
	}
	return errors.Join(errs...)
}

func mapMentions(m map[string]string, s string) bool {
	for k, v := range m {
		if strings.Contains(k, s) || strings.Contains(v, s) {
			return true
		}
	}
	return false
}

func (st *Step) patterns() []string {
	ps := slices.Concat(st.Expect.Regex, st.Expect.NotRegex)
	for _, c := range st.Expect.Count {
		ps = append(ps, c.Regex)
	}
	return slices.AppendSeq(ps, maps.Values(st.Capture))
}

// compile compiles a scenario pattern: multi-line, as Python's re.M.
func compile(p string) (*regexp.Regexp, error) {
	return regexp.Compile("(?m)" + p)
}

var varRE = regexp.MustCompile(`\$\{([^${}]+)\}`)

// placeholders replaces variables, innermost first, by a plain word.
func placeholders(s string) string {
	for varRE.MatchString(s) {
		s = varRE.ReplaceAllString(s, "x")
	}
	return s
}

// Items lists the items the steps cover, in order, without repeats.
func (s *Scenario) Items() []int {
	seen := map[int]bool{}
	var items []int
	for _, st := range s.Steps {
		for _, i := range st.Items {
			if !seen[i] {
				seen[i] = true
				items = append(items, i)
			}
		}
	}
	return items
}

// Vars are the values ${name} stands for.
type Vars map[string]string

// Expand replaces every ${name} in s: the innermost first, so
// ${seed_${item}} reads the capture named after the current server.
func (v Vars) Expand(s string) (string, error) {
	var missing []string
	for i := 0; i < 8 && varRE.MatchString(s); i++ {
		s = varRE.ReplaceAllStringFunc(s, func(m string) string {
			name := m[2 : len(m)-1]
			val, ok := v[name]
			if !ok {
				missing = append(missing, name)
				return m
			}
			return val
		})
		if len(missing) > 0 {
			return s, fmt.Errorf("unknown variable %s", strings.Join(dedupe(missing), ", "))
		}
	}
	return s, nil
}

func dedupe(ss []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range ss {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// with returns a copy of v with more values.
func (v Vars) with(kv ...string) Vars {
	c := make(Vars, len(v)+len(kv)/2)
	for k, val := range v {
		c[k] = val
	}
	for i := 0; i+1 < len(kv); i += 2 {
		c[kv[i]] = kv[i+1]
	}
	return c
}

// Result is what one attempt of a step produced.
type Result struct {
	Output string
	Exit   int
}

// Check evaluates e against r with vars substituted, returning every
// unmet expectation (empty when all hold).
func (e Expect) Check(r Result, vars Vars, login bool) ([]string, error) {
	var failed []string
	if !login && !e.Exit.Matches(r.Exit) {
		failed = append(failed, fmt.Sprintf("%s, got %d", e.Exit, r.Exit))
	}
	expand := func(s string) (string, error) { return vars.Expand(s) }
	for _, c := range e.Contains {
		s, err := expand(c)
		if err != nil {
			return nil, err
		}
		if !strings.Contains(r.Output, s) {
			failed = append(failed, fmt.Sprintf("output contains %q", s))
		}
	}
	for _, c := range e.NotContains {
		s, err := expand(c)
		if err != nil {
			return nil, err
		}
		if strings.Contains(r.Output, s) {
			failed = append(failed, fmt.Sprintf("output does not contain %q", s))
		}
	}
	for _, p := range e.Regex {
		re, err := expandCompile(p, vars)
		if err != nil {
			return nil, err
		}
		if !re.MatchString(r.Output) {
			failed = append(failed, fmt.Sprintf("output matches /%s/", re.String()[4:]))
		}
	}
	for _, p := range e.NotRegex {
		re, err := expandCompile(p, vars)
		if err != nil {
			return nil, err
		}
		if loc := re.FindStringIndex(r.Output); loc != nil {
			failed = append(failed, fmt.Sprintf("output does not match /%s/ (it has %q)", re.String()[4:], r.Output[loc[0]:loc[1]]))
		}
	}
	for _, c := range e.Count {
		re, err := expandCompile(c.Regex, vars)
		if err != nil {
			return nil, err
		}
		n := len(re.FindAllStringIndex(r.Output, -1))
		if c.Equals != "" {
			want, err := expandInt(c.Equals, vars)
			if err != nil {
				return nil, err
			}
			if n != want {
				failed = append(failed, fmt.Sprintf("%d matches of /%s/, got %d", want, re.String()[4:], n))
			}
		} else {
			min, err := expandInt(c.Min, vars)
			if err != nil {
				return nil, err
			}
			if n < min {
				failed = append(failed, fmt.Sprintf("at least %d matches of /%s/, got %d", min, re.String()[4:], n))
			}
		}
	}
	return failed, nil
}

func expandCompile(p string, vars Vars) (*regexp.Regexp, error) {
	s, err := vars.Expand(p)
	if err != nil {
		return nil, err
	}
	re, err := compile(s)
	if err != nil {
		return nil, fmt.Errorf("pattern %q: %w", s, err)
	}
	return re, nil
}

func expandInt(s string, vars Vars) (int, error) {
	v, err := vars.Expand(s)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil {
		return 0, fmt.Errorf("count %q is not a number", v)
	}
	return n, nil
}

// Captures applies patterns to output, returning the variables they set.
func Captures(patterns map[string]string, output string, vars Vars) (Vars, []string, error) {
	got := Vars{}
	var failed []string
	for name, p := range patterns {
		n, err := vars.Expand(name)
		if err != nil {
			return nil, nil, err
		}
		re, err := expandCompile(p, vars)
		if err != nil {
			return nil, nil, err
		}
		m := re.FindStringSubmatch(output)
		if m == nil {
			failed = append(failed, fmt.Sprintf("output matches /%s/ to capture %s", re.String()[4:], n))
			continue
		}
		got[n] = m[1]
	}
	return got, failed, nil
}
