package requests

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/choria-io/go-external/agent"
)

// RequestInput are the inputs of the request action.
type RequestInput struct {
	URL        string         `json:"url"`
	Method     string         `json:"method"`
	Query      map[string]any `json:"query"`
	Headers    map[string]any `json:"headers"`
	Username   string         `json:"username"`
	Password   string         `json:"password"`
	Body       string         `json:"body"`
	BodyFile   string         `json:"body_file"`
	StatusCode int            `json:"statuscode"`
}

// RequestOutput is the reply of the request action.
type RequestOutput struct {
	StatusCode int               `json:"statuscode"`
	Headers    map[string]string `json:"headers"`
	Body       string            `json:"body"`
	Duration   float64           `json:"duration"`
}

func (a *Agent) request(req *agent.Request, rep *agent.Reply, settings map[string]string) {
	out := &RequestOutput{Headers: map[string]string{}}
	rep.Data = out

	cfg, err := a.cfg.override(settings)
	if err != nil {
		rep.Abort("%v", err)
		return
	}

	input := &RequestInput{}
	if !parseInput(req, rep, input) {
		return
	}

	err = a.performRequest(cfg, input, out)
	switch {
	case err == nil:
	case isInputError(err):
		rep.InvalidData("%v", err)
	default:
		rep.Abort("%v", err)
	}
}

func (a *Agent) requestBody(cfg Config, input *RequestInput) (io.Reader, error) {
	switch {
	case input.Body != "" && input.BodyFile != "":
		return nil, badInput("body and body_file cannot be used together")

	case input.Body != "":
		if int64(len(input.Body)) > cfg.MaxRequestBodyBytes {
			return nil, badInput("body is larger than the %d bytes allowed", cfg.MaxRequestBodyBytes)
		}
		return strings.NewReader(input.Body), nil

	case input.BodyFile != "":
		// only from the policy's directories, never through a link out of
		// them; read fully so an oversized or unreadable file fails before
		// anything is sent
		dir, rel, err := within(cfg.BodyFileDirectories, input.BodyFile, "body_file", ConfigBodyFileDirectories)
		if err != nil {
			return nil, err
		}
		root, err := os.OpenRoot(dir)
		if err != nil {
			return nil, badInput("cannot read body_file: %v", err)
		}
		defer root.Close()
		f, err := root.Open(rel)
		if err != nil {
			return nil, badInput("cannot read body_file: %v", err)
		}
		defer f.Close()

		dat, err := io.ReadAll(io.LimitReader(f, cfg.MaxRequestBodyBytes+1))
		if err != nil {
			return nil, badInput("cannot read body_file %s: %v", input.BodyFile, err)
		}
		if int64(len(dat)) > cfg.MaxRequestBodyBytes {
			return nil, badInput("body_file %s is larger than the %d bytes allowed", input.BodyFile, cfg.MaxRequestBodyBytes)
		}
		return bytes.NewReader(dat), nil
	}

	return nil, nil
}

func (a *Agent) performRequest(cfg Config, input *RequestInput, out *RequestOutput) error {
	if input.StatusCode != 0 && (input.StatusCode < 100 || input.StatusCode > 599) {
		return badInput("invalid statuscode %d: must be between 100 and 599", input.StatusCode)
	}

	// the host first: nothing is read for a request that may not go out
	if err := cfg.allowURL(input.URL); err != nil {
		return err
	}
	body, err := a.requestBody(cfg, input)
	if err != nil {
		return err
	}

	ctx, cancel := context.WithTimeout(context.Background(), cfg.Timeout)
	defer cancel()

	x := &exchange{
		rawURL:   input.URL,
		method:   input.Method,
		query:    input.Query,
		headers:  input.Headers,
		username: input.Username,
		password: input.Password,
		body:     body,
	}
	hreq, err := x.build(ctx)
	if err != nil {
		return err
	}
	target := hreq.URL.Redacted()

	start := time.Now()
	defer func() { out.Duration = time.Since(start).Seconds() }()

	resp, err := cfg.client().Do(hreq)
	if err != nil {
		return describeHTTPError(err, target, cfg.Timeout)
	}
	defer resp.Body.Close()

	out.StatusCode = resp.StatusCode
	out.Headers = flattenHeaders(resp.Header)

	// read one byte past the limit to tell a body of exactly the limit from
	// an oversized one
	dat, err := io.ReadAll(io.LimitReader(resp.Body, cfg.MaxBodyBytes+1))
	if err != nil {
		return describeHTTPError(err, target, cfg.Timeout)
	}
	if int64(len(dat)) > cfg.MaxBodyBytes {
		return fmt.Errorf("response body from %s is larger than the %d bytes allowed", target, cfg.MaxBodyBytes)
	}
	out.Body = string(dat)

	switch {
	case input.StatusCode != 0 && resp.StatusCode != input.StatusCode:
		return fmt.Errorf("%s returned status code %d, expected %d", target, resp.StatusCode, input.StatusCode)
	case input.StatusCode == 0 && (resp.StatusCode < 200 || resp.StatusCode > 299):
		return fmt.Errorf("%s returned status code %d, expected a 2xx status code", target, resp.StatusCode)
	}

	return nil
}
