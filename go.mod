module github.com/litefs/litefs

go 1.26.8

require (
	bazil.org/fuse v0.0.0-20230120002735-62a210ff1fd5
	github.com/mattn/go-sqlite3 v1.14.53
	github.com/superfly/ltx v0.5.3
	golang.org/x/sync v0.25.0
	golang.org/x/sys v0.4.0
	gopkg.in/yaml.v3 v3.0.1
)

require github.com/pierrec/lz4/v4 v4.1.23 // indirect
