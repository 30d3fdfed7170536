// Command litefs-demoapp is the tiny web application of "make demo": it
// runs behind a node's litefs proxy and uses one SQLite database through
// the node's mount. GET /messages lists the rows of table t (id, msg);
// POST /messages stores the request body as a new row. Every answer names
// the node that served it (-name), so the demo shows where a request
// landed.
//
// It exits 0 on SIGINT or SIGTERM after finishing the requests in flight.
package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	_ "github.com/mattn/go-sqlite3"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "litefs-demoapp: %s\n", err)
		stop()
		os.Exit(1)
	}
}

// run parses the flags and serves until ctx ends.
func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("litefs-demoapp", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:8081", "listen address (the proxy's target)")
	path := fs.String("db", "", "path of the SQLite database, inside the litefs mount")
	name := fs.String("name", "app", "name of this node, put in every answer")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *path == "" {
		return errors.New("-db is required")
	}
	// database/sql connects on first use: on a replica the database need
	// not exist yet when the application starts.
	db, err := sql.Open("sqlite3", "file:"+*path+"?_busy_timeout=5000")
	if err != nil {
		return fmt.Errorf("open %s: %w", *path, err)
	}
	defer db.Close()
	srv := &http.Server{Addr: *addr, Handler: newApp(db, *name), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil {
		return fmt.Errorf("shut down: %w", err)
	}
	return nil
}

// app answers /messages with the rows of table t.
type app struct {
	db   *sql.DB
	name string
}

// newApp returns the application's handler.
func newApp(db *sql.DB, name string) http.Handler {
	a := &app{db: db, name: name}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /messages", a.list)
	mux.HandleFunc("POST /messages", a.add)
	return mux
}

// list: GET /messages answers one "id|msg" line per row, then the node.
func (a *app) list(w http.ResponseWriter, r *http.Request) {
	rows, err := a.db.QueryContext(r.Context(), `SELECT id, msg FROM t ORDER BY id`)
	if err != nil {
		http.Error(w, "list messages on "+a.name+": "+err.Error(), http.StatusInternalServerError)
		return
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var id int64
		var msg string
		if err := rows.Scan(&id, &msg); err != nil {
			http.Error(w, "read message on "+a.name+": "+err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(&b, "%d|%s\n", id, msg)
	}
	if err := rows.Err(); err != nil {
		http.Error(w, "list messages on "+a.name+": "+err.Error(), http.StatusInternalServerError)
		return
	}
	fmt.Fprintf(&b, "(served by the %s)\n", a.name)
	_, _ = io.WriteString(w, b.String())
}

// add: POST /messages stores the body (at most 4 KiB, not empty) and
// answers 201 "stored message <id> on the <name>".
func (a *app) add(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 4<<10))
	if err != nil {
		http.Error(w, "read message: "+err.Error(), http.StatusBadRequest)
		return
	}
	msg := strings.TrimSpace(string(body))
	if msg == "" {
		http.Error(w, "empty message: send it as the request body", http.StatusBadRequest)
		return
	}
	res, err := a.db.ExecContext(r.Context(), `INSERT INTO t(msg) VALUES(?)`, msg)
	if err != nil {
		http.Error(w, "store message on "+a.name+": "+err.Error(), http.StatusInternalServerError)
		return
	}
	id, err := res.LastInsertId()
	if err != nil {
		http.Error(w, "store message on "+a.name+": "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusCreated)
	fmt.Fprintf(w, "stored message %d on the %s\n", id, a.name)
}
