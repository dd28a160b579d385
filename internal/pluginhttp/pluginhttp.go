// Package pluginhttp is the plugins host's web server, the same program in
// the namespace lab, the NixOS module and the OCI image: it serves a
// docroot of plugin archives read-only, lists directories (the tour's
// requests agent step fetches /), and logs every request.
package pluginhttp

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"
)

// Handler serves the files under root. Nothing outside root is reachable,
// through symbolic links or otherwise (os.Root), and no name starting
// with a dot is listed or served.
func Handler(root *os.Root) http.Handler {
	return http.FileServerFS(noDotFiles{root.FS()})
}

// Serve serves the directory docroot on listen, logging each request to
// log, until ctx ends.
func Serve(ctx context.Context, docroot, listen string, log io.Writer) error {
	root, err := os.OpenRoot(docroot)
	if err != nil {
		return fmt.Errorf("web root %s: %w", docroot, err)
	}
	defer root.Close()
	files := Handler(root)
	srv := &http.Server{
		Addr:              listen,
		ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
			files.ServeHTTP(rec, r)
			fmt.Fprintf(log, "%s %s %s %q %d %d\n", time.Now().UTC().Format(time.RFC3339), r.RemoteAddr, r.Method, r.URL.RequestURI(), rec.status, rec.bytes)
		}),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	select {
	case err := <-errc:
		return fmt.Errorf("serving %s on %s: %w", docroot, listen, err)
	case <-ctx.Done():
		shutdown, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return srv.Shutdown(shutdown)
	}
}

// noDotFiles hides every path with an element starting with a dot.
type noDotFiles struct{ fs.FS }

func hidden(name string) bool {
	for _, elem := range strings.Split(name, "/") {
		if strings.HasPrefix(elem, ".") && elem != "." {
			return true
		}
	}
	return false
}

func (f noDotFiles) Open(name string) (fs.File, error) {
	if hidden(name) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	file, err := f.FS.Open(name)
	if err != nil {
		return nil, err
	}
	st, err := file.Stat()
	if err != nil {
		file.Close()
		return nil, err
	}
	if d, ok := file.(fs.ReadDirFile); ok && st.IsDir() {
		return dir{d}, nil
	}
	return file, nil
}

// dir lists a directory without its dot files.
type dir struct{ fs.ReadDirFile }

func (d dir) ReadDir(n int) ([]fs.DirEntry, error) {
	for {
		entries, err := d.ReadDirFile.ReadDir(n)
		visible := slices.DeleteFunc(entries, func(e fs.DirEntry) bool { return strings.HasPrefix(e.Name(), ".") })
		// a batch of hidden entries only is not the end of the directory
		if n <= 0 || len(visible) > 0 || err != nil {
			return visible, err
		}
	}
}

type statusRecorder struct {
	http.ResponseWriter
	status int
	bytes  int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	n, err := r.ResponseWriter.Write(b)
	r.bytes += n
	return n, err
}
