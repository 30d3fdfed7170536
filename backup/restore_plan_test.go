package backup

import (
	"fmt"
	"testing"

	"github.com/superfly/ltx"
)

func TestExtend_ChainsFilesThatStartWhereThePlanEnds(t *testing.T) {
	f := func(level int, min, max ltx.TXID) FileInfo { return FileInfo{Level: level, MinTXID: min, MaxTXID: max} }
	names := func(plan []FileInfo) string {
		s := ""
		for _, p := range plan {
			s += fmt.Sprintf("%d:%d-%d ", p.Level, p.MinTXID, p.MaxTXID)
		}
		return s
	}
	snap := f(SnapshotLevel, 1, 10)
	for _, tt := range []struct {
		name  string
		plan  []FileInfo
		files []FileInfo
		txid  ltx.TXID
		want  string
	}{
		{"snapshot then level 0", []FileInfo{snap}, []FileInfo{f(0, 11, 12), f(0, 13, 20)}, 0, "9:1-10 0:11-12 0:13-20 "},
		{"stops at a gap", []FileInfo{snap}, []FileInfo{f(0, 11, 12), f(0, 14, 20)}, 0, "9:1-10 0:11-12 "},
		{"the longest of overlapping files", []FileInfo{snap}, []FileInfo{f(0, 11, 12), f(0, 11, 15), f(0, 16, 16)}, 0, "9:1-10 0:11-15 0:16-16 "},
		{"never past the target", []FileInfo{snap}, []FileInfo{f(0, 11, 12), f(0, 13, 20)}, 15, "9:1-10 0:11-12 "},
		{"files already covered are skipped", []FileInfo{snap}, []FileInfo{f(0, 2, 5), f(0, 11, 11)}, 0, "9:1-10 0:11-11 "},
		{"without a snapshot from txid 1", nil, []FileInfo{f(0, 1, 3), f(0, 4, 4)}, 0, "0:1-3 0:4-4 "},
		{"nothing to start from", nil, []FileInfo{f(0, 2, 3)}, 0, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := names(extend(tt.plan, tt.files, tt.txid)); got != tt.want {
				t.Fatalf("plan %q, want %q", got, tt.want)
			}
		})
	}
}
