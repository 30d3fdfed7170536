package backup

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/superfly/ltx"
)

// Levels lists every level, lowest first: 0 (one file per sync), the
// compaction levels 1-8 and the snapshot level 9.
var Levels = []int{0, 1, 2, 3, 4, 5, 6, 7, 8, SnapshotLevel}

// Head is the newest state a bucket holds for a database: the file with
// the highest MaxTXID over all levels and its post-apply checksum.
type Head struct {
	Pos  ltx.Pos
	File FileInfo
	// Snapshot is when the newest snapshot was written (zero if none).
	Snapshot time.Time
	// Objects is the number of LTX objects of the database, all levels.
	Objects int
}

// ListAll lists every level of database name.
func (c *Client) ListAll(ctx context.Context, name string) ([]FileInfo, error) {
	var all []FileInfo
	for _, level := range Levels {
		infos, err := c.List(ctx, name, level)
		if err != nil {
			return nil, err
		}
		all = append(all, infos...)
	}
	return all, nil
}

// Head returns the newest position the bucket holds for database name
// (zero Pos if it holds nothing), reading the newest file's trailer.
func (c *Client) Head(ctx context.Context, name string) (Head, error) {
	all, err := c.ListAll(ctx, name)
	if err != nil {
		return Head{}, err
	}
	head := Head{Objects: len(all)}
	for _, info := range all {
		if info.MaxTXID > head.File.MaxTXID {
			head.File = info
		}
		if info.Level == SnapshotLevel && info.CreatedAt.After(head.Snapshot) {
			head.Snapshot = info.CreatedAt
		}
	}
	if head.File.MaxTXID == 0 {
		return head, nil
	}
	trailer, err := c.ReadTrailer(ctx, name, head.File)
	if err != nil {
		return Head{}, err
	}
	head.Pos = ltx.Pos{TXID: head.File.MaxTXID, PostApplyChecksum: trailer.PostApplyChecksum}
	return head, nil
}

// ReadTrailer reads the trailer (the last ltx.TrailerSize bytes) of one
// LTX object with a ranged GET.
func (c *Client) ReadTrailer(ctx context.Context, name string, info FileInfo) (ltx.Trailer, error) {
	var trailer ltx.Trailer
	key := c.Key(name, info.Level, info.MinTXID, info.MaxTXID)
	out, err := c.s3.GetObject(ctx, &s3.GetObjectInput{
		Bucket: aws.String(c.cfg.Bucket),
		Key:    aws.String(key),
		Range:  aws.String(fmt.Sprintf("bytes=-%d", ltx.TrailerSize)),
	})
	if err != nil {
		return trailer, fmt.Errorf("backup: read trailer of %s: %w", key, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(io.LimitReader(out.Body, ltx.TrailerSize+1))
	if err != nil {
		return trailer, fmt.Errorf("backup: read trailer of %s: %w", key, err)
	} else if len(b) != ltx.TrailerSize {
		return trailer, fmt.Errorf("backup: trailer of %s is %d bytes, want %d", key, len(b), ltx.TrailerSize)
	}
	if err := trailer.UnmarshalBinary(b); err != nil {
		return trailer, fmt.Errorf("backup: trailer of %s: %w", key, err)
	}
	return trailer, nil
}
