package requests

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/choria-io/go-external/agent"
)

// DefaultTargetMode is used when target_mode is not given.
const DefaultTargetMode os.FileMode = 0o644

// DownloadInput are the inputs of the download action.
type DownloadInput struct {
	URL        string         `json:"url"`
	Target     string         `json:"target"`
	TargetMode string         `json:"target_mode"`
	MD5        string         `json:"md5"`
	SHA256     string         `json:"sha256"`
	Query      map[string]any `json:"query"`
	Headers    map[string]any `json:"headers"`
	Username   string         `json:"username"`
	Password   string         `json:"password"`
}

// DownloadOutput is the reply of the download action.
type DownloadOutput struct {
	Bytes      int64  `json:"bytes"`
	StatusCode int    `json:"statuscode"`
	MD5        string `json:"md5"`
	SHA256     string `json:"sha256"`
	Error      string `json:"error"`
}

func (a *Agent) download(req *agent.Request, rep *agent.Reply, settings map[string]string) {
	out := &DownloadOutput{}
	rep.Data = out

	fail := func(err error) {
		out.Error = err.Error()
		if isInputError(err) {
			rep.InvalidData("%v", err)
		} else {
			rep.Abort("%v", err)
		}
	}

	cfg, err := a.cfg.override(settings)
	if err != nil {
		fail(err)
		return
	}

	input := &DownloadInput{}
	if !parseInput(req, rep, input) {
		out.Error = rep.StatusMessage
		return
	}

	err = a.performDownload(cfg, input, out)
	if err != nil {
		fail(err)
	}
}

// downloadPlan is the validated form of DownloadInput.
type downloadPlan struct {
	target string
	// root is the policy's directory holding target, rel target within it:
	// the file is written through os.Root, so no link leads out of root.
	root, rel string
	mode      os.FileMode
	md5       string
	sha256    string
}

func parseMode(s string) (os.FileMode, error) {
	if s == "" {
		return DefaultTargetMode, nil
	}

	m, err := strconv.ParseUint(s, 8, 32)
	if err != nil || m > 0o7777 {
		return 0, badInput("invalid target_mode %q: must be an octal mode like 0644", s)
	}
	if m&0o7000 != 0 {
		return 0, badInput("target_mode %q has setuid, setgid or sticky bits, which the agent never sets", s)
	}

	return os.FileMode(m), nil
}

func parseDigest(name string, value string, size int) (string, error) {
	if value == "" {
		return "", nil
	}

	v := strings.ToLower(value)
	b, err := hex.DecodeString(v)
	if err != nil || len(b) != size {
		return "", badInput("invalid %s checksum %q: must be %d hex characters", name, value, size*2)
	}

	return v, nil
}

func planDownload(cfg Config, input *DownloadInput) (*downloadPlan, error) {
	if input.Target == "" {
		return nil, badInput("target is required")
	}
	root, rel, err := within(cfg.DownloadDirectories, input.Target, "target", ConfigDownloadDirectories)
	if err != nil {
		return nil, err
	}
	p := &downloadPlan{target: input.Target, root: root, rel: rel}

	p.mode, err = parseMode(input.TargetMode)
	if err != nil {
		return nil, err
	}
	p.md5, err = parseDigest("md5", input.MD5, md5.Size)
	if err != nil {
		return nil, err
	}
	p.sha256, err = parseDigest("sha256", input.SHA256, sha256.Size)
	if err != nil {
		return nil, err
	}

	dir := filepath.Dir(p.target)
	dirInfo, err := os.Lstat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, badInput("target directory %s does not exist", dir)
	case err != nil:
		return nil, badInput("cannot use target directory %s: %v", dir, err)
	case dirInfo.Mode()&fs.ModeSymlink != 0:
		return nil, badInput("target directory %s is a symbolic link", dir)
	case !dirInfo.IsDir():
		return nil, badInput("target directory %s is not a directory", dir)
	}

	if ti, err := os.Lstat(p.target); err == nil && !ti.Mode().IsRegular() {
		return nil, badInput("target %s exists and is not a regular file", p.target)
	}

	return p, nil
}

func (a *Agent) performDownload(cfg Config, input *DownloadInput, out *DownloadOutput) error {
	if err := cfg.allowURL(input.URL); err != nil {
		return err
	}
	plan, err := planDownload(cfg, input)
	if err != nil {
		return err
	}
	root, err := os.OpenRoot(plan.root)
	if err != nil {
		return badInput("cannot use download directory %s: %v", plan.root, err)
	}
	defer root.Close()

	ctx, cancel := context.WithTimeout(context.Background(), cfg.Timeout)
	defer cancel()

	x := &exchange{
		rawURL:   input.URL,
		query:    input.Query,
		headers:  input.Headers,
		username: input.Username,
		password: input.Password,
	}
	hreq, err := x.build(ctx)
	if err != nil {
		return err
	}
	source := hreq.URL.Redacted()

	resp, err := cfg.client().Do(hreq)
	if err != nil {
		return describeHTTPError(err, source, cfg.Timeout)
	}
	defer resp.Body.Close()

	out.StatusCode = resp.StatusCode
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("download from %s failed: status code %d", source, resp.StatusCode)
	}
	if resp.ContentLength > cfg.MaxDownloadBytes {
		return fmt.Errorf("download from %s is larger than the %d bytes allowed", source, cfg.MaxDownloadBytes)
	}

	res, err := writeAtomic(root, plan, resp.Body, cfg.MaxDownloadBytes, func(err error) error {
		return describeHTTPError(err, source, cfg.Timeout)
	})
	if res != nil {
		out.Bytes = res.bytes
		out.MD5 = res.md5
		out.SHA256 = res.sha256
	}
	if err != nil {
		return fmt.Errorf("download from %s to %s failed: %w", source, plan.target, err)
	}

	return nil
}

type writeResult struct {
	bytes  int64
	md5    string
	sha256 string
}

// writeAtomic writes r to a temporary file beside the target and renames it
// into place only once the size and checksums are known to be right, so the
// target is either the old file or the complete new one, never a partial one.
func writeAtomic(root *os.Root, p *downloadPlan, r io.Reader, max int64, readErr func(error) error) (res *writeResult, err error) {
	dir := filepath.Dir(p.rel)
	tmpRel := filepath.Join(dir, "."+filepath.Base(p.rel)+".download-"+strconv.FormatInt(time.Now().UnixNano(), 36))
	tmp, err := root.OpenFile(tmpRel, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("cannot write to target directory %s: %w", filepath.Dir(p.target), err)
	}

	committed := false
	defer func() {
		if !committed {
			tmp.Close()
			_ = root.Remove(tmpRel)
		}
	}()

	md5h := md5.New()
	sha256h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, md5h, sha256h), &limitedReader{r: r, remaining: max, limit: max, readErr: readErr})
	if err != nil {
		return nil, err
	}

	res = &writeResult{
		bytes:  n,
		md5:    hex.EncodeToString(md5h.Sum(nil)),
		sha256: hex.EncodeToString(sha256h.Sum(nil)),
	}

	if p.md5 != "" && p.md5 != res.md5 {
		return res, fmt.Errorf("md5 checksum mismatch: expected %s got %s", p.md5, res.md5)
	}
	if p.sha256 != "" && p.sha256 != res.sha256 {
		return res, fmt.Errorf("sha256 checksum mismatch: expected %s got %s", p.sha256, res.sha256)
	}

	err = tmp.Sync()
	if err != nil {
		return res, fmt.Errorf("syncing %s: %w", tmp.Name(), err)
	}
	// Chmod rather than create with the mode so the umask does not apply
	err = tmp.Chmod(p.mode)
	if err != nil {
		return res, fmt.Errorf("setting mode %04o: %w", p.mode, err)
	}
	err = tmp.Close()
	if err != nil {
		return res, fmt.Errorf("closing %s: %w", tmp.Name(), err)
	}

	err = root.Rename(tmpRel, p.rel)
	if err != nil {
		return res, fmt.Errorf("renaming into place: %w", err)
	}
	committed = true

	// persist the rename, the file is in place already so failure is harmless
	if d, err := root.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}

	return res, nil
}

var errTooLarge = errors.New("too large")

// limitedReader fails instead of silently truncating at the limit.
type limitedReader struct {
	r         io.Reader
	remaining int64
	limit     int64
	readErr   func(error) error
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if int64(len(p)) > l.remaining+1 {
		p = p[:l.remaining+1]
	}

	n, err := l.r.Read(p)
	l.remaining -= int64(n)
	if l.remaining < 0 {
		return 0, fmt.Errorf("download is larger than the %d bytes allowed: %w", l.limit, errTooLarge)
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return n, l.readErr(err)
	}

	return n, err
}
