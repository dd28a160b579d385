package requests

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"
)

// supportedMethods matches the method list in the DDL.
var supportedMethods = []string{
	http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
	http.MethodPatch, http.MethodDelete, http.MethodOptions,
}

// inputError marks errors caused by bad input so they are reported as
// InvalidData rather than as a failed action.
type inputError struct{ msg string }

func (e *inputError) Error() string { return e.msg }

func badInput(format string, args ...any) error {
	return &inputError{msg: fmt.Sprintf(format, args...)}
}

func isInputError(err error) bool {
	var ie *inputError
	return errors.As(err, &ie)
}

// exchange is what both actions need to issue a request.
type exchange struct {
	rawURL   string
	method   string
	query    map[string]any
	headers  map[string]any
	username string
	password string
	body     io.Reader
}

func parseURL(raw string) (*url.URL, error) {
	if strings.TrimSpace(raw) == "" {
		return nil, badInput("url is required")
	}

	u, err := url.Parse(raw)
	if err != nil {
		return nil, badInput("invalid url %q: %v", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, badInput("invalid url %q: scheme must be http or https", raw)
	}
	if u.Host == "" {
		return nil, badInput("invalid url %q: no host", raw)
	}

	return u, nil
}

func parseMethod(m string) (string, error) {
	if m == "" {
		return http.MethodGet, nil
	}

	um := strings.ToUpper(m)
	if !slices.Contains(supportedMethods, um) {
		return "", badInput("unsupported method %q, expected one of %s", m, strings.Join(supportedMethods, ", "))
	}

	return um, nil
}

// hashValues turns one value of a DDL hash input into strings; the CLI sends
// JSON so numbers and booleans are accepted too, nested objects are not.
func hashValues(kind string, key string, v any) ([]string, error) {
	switch val := v.(type) {
	case string:
		return []string{val}, nil
	case float64:
		return []string{strconv.FormatFloat(val, 'f', -1, 64)}, nil
	case bool:
		return []string{strconv.FormatBool(val)}, nil
	case nil:
		return []string{""}, nil
	case []any:
		var res []string
		for _, item := range val {
			s, err := hashValues(kind, key, item)
			if err != nil {
				return nil, err
			}
			if _, nested := item.([]any); nested {
				return nil, badInput("%s %q: nested lists are not supported", kind, key)
			}
			res = append(res, s...)
		}
		return res, nil
	default:
		return nil, badInput("%s %q: value must be a string, number, boolean or a list of those", kind, key)
	}
}

// sortedKeys gives a stable order so requests are reproducible.
func sortedKeys(m map[string]any) []string { return slices.Sorted(maps.Keys(m)) }

func (x *exchange) build(ctx context.Context) (*http.Request, error) {
	u, err := parseURL(x.rawURL)
	if err != nil {
		return nil, err
	}

	method, err := parseMethod(x.method)
	if err != nil {
		return nil, err
	}

	if len(x.query) > 0 {
		q := u.Query()
		for _, k := range sortedKeys(x.query) {
			vals, err := hashValues("query", k, x.query[k])
			if err != nil {
				return nil, err
			}
			for _, v := range vals {
				q.Add(k, v)
			}
		}
		u.RawQuery = q.Encode()
	}

	if x.password != "" && x.username == "" {
		return nil, badInput("password given without username")
	}

	req, err := http.NewRequestWithContext(ctx, method, u.String(), x.body)
	if err != nil {
		return nil, badInput("invalid request for %q: %v", x.rawURL, err)
	}

	for _, k := range sortedKeys(x.headers) {
		if !httpguts.ValidHeaderFieldName(k) {
			return nil, badInput("invalid header name %q", k)
		}
		vals, err := hashValues("header", k, x.headers[k])
		if err != nil {
			return nil, err
		}
		for _, v := range vals {
			if !httpguts.ValidHeaderFieldValue(v) {
				return nil, badInput("header %q: value may not contain line breaks or other control characters", k)
			}
			req.Header.Add(k, v)
		}
	}

	if x.username != "" {
		req.SetBasicAuth(x.username, x.password)
	}

	return req, nil
}

func (c Config) client() *http.Client {
	transport := c.Transport
	if transport == nil {
		transport = http.DefaultTransport.(*http.Transport).Clone()
	}

	max := c.MaxRedirects
	return &http.Client{
		Transport: transport,
		Timeout:   c.Timeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= max {
				return fmt.Errorf("stopped after %d redirects", max)
			}
			// a redirect may not lead where the caller could not go
			return c.allowHost(req.URL)
		},
	}
}

// describeHTTPError says in words what went wrong talking to the server,
// calling out timeouts since those are the common operational failure.
func describeHTTPError(err error, target string, timeout time.Duration) error {
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return fmt.Errorf("request to %s timed out after %v", target, timeout)
	}

	return fmt.Errorf("request to %s failed: %w", target, err)
}

// flattenHeaders renders response headers as the DDL's hash output.
func flattenHeaders(h http.Header) map[string]string {
	res := make(map[string]string, len(h))
	for k, v := range h {
		res[k] = strings.Join(v, ", ")
	}
	return res
}
