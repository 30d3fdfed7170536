package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// benchApp is the small application behind a node's proxy in the proxy
// section: an HTTP server in the benchmark process that uses proxy.db
// through the node's mount with go-sqlite3, as applications behind the
// proxy do. Every answer names the node that served it.
type benchApp struct {
	name string
	ln   net.Listener
	srv  *http.Server
	db   *sql.DB
}

// listenApp reserves the application's loopback port (proxy.target) before
// its node starts; serve starts answering once the database can be opened.
func listenApp(name string) (*benchApp, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen for the %s app: %w", name, err)
	}
	return &benchApp{name: name, ln: ln}, nil
}

// addr is the application's host:port.
func (a *benchApp) addr() string { return a.ln.Addr().String() }

// url is the application's base URL, to call it directly.
func (a *benchApp) url() string { return "http://" + a.addr() }

// serve answers requests with db until close.
func (a *benchApp) serve(db *sql.DB) {
	a.db = db
	mux := http.NewServeMux()
	mux.HandleFunc("GET /items/{id}", a.get)
	mux.HandleFunc("POST /items", a.insert)
	a.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = a.srv.Serve(a.ln) }()
}

// close stops the server (or only the listener if it never served) and
// closes the database.
func (a *benchApp) close() error {
	var err error
	if a.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err = a.srv.Shutdown(ctx)
	} else {
		err = a.ln.Close()
	}
	if a.db != nil {
		err = errors.Join(err, a.db.Close())
	}
	if err != nil {
		return fmt.Errorf("stop the %s app: %w", a.name, err)
	}
	return nil
}

// get: GET /items/{id} answers "<value> node=<name>", 404 if absent.
func (a *benchApp) get(w http.ResponseWriter, r *http.Request) {
	var v string
	err := a.db.QueryRowContext(r.Context(), `SELECT v FROM items WHERE id = ?`, r.PathValue("id")).Scan(&v)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		http.Error(w, "no item "+r.PathValue("id")+" on "+a.name, http.StatusNotFound)
	case err != nil:
		http.Error(w, "select: "+err.Error(), http.StatusInternalServerError)
	default:
		fmt.Fprintf(w, "%s node=%s", v, a.name)
	}
}

// insert: POST /items stores the body, answers 201 "id=<id> node=<name>".
func (a *benchApp) insert(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, "read body: "+err.Error(), http.StatusBadRequest)
		return
	}
	res, err := a.db.ExecContext(r.Context(), `INSERT INTO items(v) VALUES(?)`, string(body))
	if err != nil {
		http.Error(w, "insert: "+err.Error(), http.StatusInternalServerError)
		return
	}
	id, _ := res.LastInsertId()
	w.WriteHeader(http.StatusCreated)
	fmt.Fprintf(w, "id=%d node=%s", id, a.name)
}
