package lab

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

// ServeHTTPCommand is the hidden sub-command that runs the plugins host's
// web server inside its namespace.
const ServeHTTPCommand = "__serve-http"

// ServeHTTP serves root read-only on listen and logs every request, as the
// reference's Apache does, until ctx ends.
func ServeHTTP(ctx context.Context, root, listen string, log io.Writer) error {
	if st, err := os.Stat(root); err != nil || !st.IsDir() {
		return fmt.Errorf("web root %s is not a directory", root)
	}
	files := http.FileServer(http.Dir(root))
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
		return fmt.Errorf("serving %s on %s: %w", root, listen, err)
	case <-ctx.Done():
		shutdown, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return srv.Shutdown(shutdown)
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
