// Package backup uploads every database's LTX history to S3-compatible
// object storage, in the layout Litestream v0.5 reads, and restores a
// database from it (SPEC section 14, docs/backup.md).
package backup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"github.com/superfly/ltx"
)

// SnapshotLevel is the level that holds full snapshots (every page, MinTXID
// 1), as in Litestream v0.5.
const SnapshotLevel = 9

// MetadataTimestamp is the object metadata key that carries the LTX
// header's timestamp, the key Litestream v0.5 reads for -timestamp restores.
const MetadataTimestamp = "litestream-timestamp"

// Config is where the backup lives: the `backup:` section of litefs.yml
// minus the timings. Credentials come from the usual AWS environment
// variables and files, never from here.
type Config struct {
	Bucket         string
	Path           string // prefix; database NAME lives under Path/NAME/
	Endpoint       string // any S3-compatible store; empty is AWS
	Region         string
	ForcePathStyle bool
}

// Client reads and writes LTX files in one bucket.
type Client struct {
	cfg Config
	s3  *s3.Client
}

// FileInfo describes one LTX object of a database.
type FileInfo struct {
	Level     int
	MinTXID   ltx.TXID
	MaxTXID   ltx.TXID
	Size      int64
	CreatedAt time.Time
}

// NewClient builds a client from cfg and the AWS environment (credentials,
// profile, AWS_CA_BUNDLE: the SDK's own HTTP client honours it).
func NewClient(ctx context.Context, cfg Config) (*Client, error) {
	if cfg.Bucket == "" {
		return nil, errors.New("backup: bucket is required")
	}
	var opts []func(*config.LoadOptions) error
	region := cfg.Region
	if region == "" {
		region = "us-east-1"
	}
	opts = append(opts, config.WithRegion(region))
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("backup: load AWS configuration: %w", err)
	}
	c := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		o.UsePathStyle = cfg.ForcePathStyle
		// Checksums only when the operation needs them: several
		// S3-compatible stores reject the newer default trailers.
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	})
	return &Client{cfg: cfg, s3: c}, nil
}

// Bucket is the client's bucket.
func (c *Client) Bucket() string { return c.cfg.Bucket }

// CreateBucket creates the bucket (tests and first-time setup); an existing
// bucket owned by the caller is not an error.
func (c *Client) CreateBucket(ctx context.Context) error {
	_, err := c.s3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(c.cfg.Bucket)})
	var owned *types.BucketAlreadyOwnedByYou
	if err != nil && !errors.As(err, &owned) {
		return fmt.Errorf("backup: create bucket %s: %w", c.cfg.Bucket, err)
	}
	return nil
}

// dbPrefix is the key prefix of database name, ending in "/".
func (c *Client) dbPrefix(name string) string {
	return path.Join(c.cfg.Path, name) + "/"
}

// Key is the object key of an LTX file: <path>/<name>/<level as 4 hex
// digits>/<min>-<max>.ltx.
func (c *Client) Key(name string, level int, min, max ltx.TXID) string {
	return c.dbPrefix(name) + fmt.Sprintf("%04x/", level) + ltx.FormatFilename(min, max)
}

// PutLTX uploads one LTX file. ts is its header timestamp, stored as
// metadata for timestamp restores.
func (c *Client) PutLTX(ctx context.Context, name string, level int, min, max ltx.TXID, ts time.Time, data []byte) error {
	return c.PutLTXFrom(ctx, name, level, min, max, ts, bytes.NewReader(data), int64(len(data)))
}

// PutLTXFrom uploads one LTX file of size bytes read from body.
func (c *Client) PutLTXFrom(ctx context.Context, name string, level int, min, max ltx.TXID, ts time.Time, body io.ReadSeeker, size int64) error {
	key := c.Key(name, level, min, max)
	_, err := c.s3.PutObject(ctx, &s3.PutObjectInput{
		Bucket:        aws.String(c.cfg.Bucket),
		Key:           aws.String(key),
		Body:          body,
		ContentLength: aws.Int64(size),
		Metadata:      map[string]string{MetadataTimestamp: ts.UTC().Format(time.RFC3339Nano)},
	})
	if err != nil {
		return fmt.Errorf("backup: put %s: %w", key, err)
	}
	return nil
}

// GetLTX opens one LTX file for reading.
func (c *Client) GetLTX(ctx context.Context, name string, info FileInfo) (io.ReadCloser, error) {
	key := c.Key(name, info.Level, info.MinTXID, info.MaxTXID)
	out, err := c.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(c.cfg.Bucket), Key: aws.String(key)})
	if err != nil {
		return nil, fmt.Errorf("backup: get %s: %w", key, err)
	}
	return out.Body, nil
}

// DeleteLTX removes LTX files of database name.
func (c *Client) DeleteLTX(ctx context.Context, name string, infos []FileInfo) error {
	for _, info := range infos {
		key := c.Key(name, info.Level, info.MinTXID, info.MaxTXID)
		if _, err := c.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(c.cfg.Bucket), Key: aws.String(key)}); err != nil {
			return fmt.Errorf("backup: delete %s: %w", key, err)
		}
	}
	return nil
}

// List returns the LTX files of database name at level, sorted by MinTXID
// then MaxTXID. Objects whose names are not LTX file names are ignored.
func (c *Client) List(ctx context.Context, name string, level int) ([]FileInfo, error) {
	prefix := c.dbPrefix(name) + fmt.Sprintf("%04x/", level)
	p := s3.NewListObjectsV2Paginator(c.s3, &s3.ListObjectsV2Input{Bucket: aws.String(c.cfg.Bucket), Prefix: aws.String(prefix)})
	var infos []FileInfo
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("backup: list %s: %w", prefix, err)
		}
		for _, obj := range page.Contents {
			base := strings.TrimPrefix(aws.ToString(obj.Key), prefix)
			min, max, err := ltx.ParseFilename(base)
			if err != nil || strings.Contains(base, "/") {
				continue
			}
			infos = append(infos, FileInfo{Level: level, MinTXID: min, MaxTXID: max,
				Size: aws.ToInt64(obj.Size), CreatedAt: aws.ToTime(obj.LastModified).UTC()})
		}
	}
	sort.Slice(infos, func(i, j int) bool {
		if infos[i].MinTXID != infos[j].MinTXID {
			return infos[i].MinTXID < infos[j].MinTXID
		}
		return infos[i].MaxTXID < infos[j].MaxTXID
	})
	return infos, nil
}

// IsNotFound reports whether err is S3's "no such key/bucket".
func IsNotFound(err error) bool {
	var api smithy.APIError
	if errors.As(err, &api) {
		switch api.ErrorCode() {
		case "NoSuchKey", "NotFound", "NoSuchBucket":
			return true
		}
	}
	return false
}

// ListDBs returns the names of the databases the bucket holds under path.
func (c *Client) ListDBs(ctx context.Context) ([]string, error) {
	prefix := ""
	if c.cfg.Path != "" {
		prefix = c.cfg.Path + "/"
	}
	p := s3.NewListObjectsV2Paginator(c.s3, &s3.ListObjectsV2Input{Bucket: aws.String(c.cfg.Bucket),
		Prefix: aws.String(prefix), Delimiter: aws.String("/")})
	var names []string
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("backup: list databases under %q: %w", prefix, err)
		}
		for _, cp := range page.CommonPrefixes {
			names = append(names, strings.TrimSuffix(strings.TrimPrefix(aws.ToString(cp.Prefix), prefix), "/"))
		}
	}
	sort.Strings(names)
	return names, nil
}
