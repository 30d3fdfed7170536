package main

import "testing"

// testEnv is the environment the ExpandEnv tests run against.
var testEnv = envMap(map[string]string{
	"FLY_REGION": "den",
	"PRIMARY":    "den",
	"OTHER":      "ord",
	"HOST":       "node1",
	"EMPTY":      "",
	"_X1":        "x",
})

// expandCase is one ExpandEnv input and its expected output.
type expandCase struct{ name, in, want string }

// runExpand runs ExpandEnv over cases against testEnv.
func runExpand(t *testing.T, cases []expandCase) {
	t.Helper()
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			if got := ExpandEnv(tt.in, testEnv); got != tt.want {
				t.Errorf("ExpandEnv(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestExpandEnv_Variables(t *testing.T) {
	runExpand(t, []expandCase{
		{"bare", "hostname: $HOST", "hostname: node1"},
		{"braced", "url: http://${HOST}:20202", "url: http://node1:20202"},
		{"bare stops at non-name byte", "$HOST.internal", "node1.internal"},
		{"bare name is greedy", "$HOSTNAME", ""},
		{"underscore and digits", "$_X1-${_X1}", "x-x"},
		{"unset bare", "a${NOPE}b$NOPE.c", "ab.c"},
		{"set but empty", "[$EMPTY]", "[]"},
		{"two on a line", "$HOST/$OTHER", "node1/ord"},
		{"no variables", "plain: text # comment", "plain: text # comment"},
		{"multi-line", "a: $HOST\nb: ${OTHER}\n", "a: node1\nb: ord\n"},
	})
}

func TestExpandEnv_Comparisons(t *testing.T) {
	runExpand(t, []expandCase{
		{"equal double quotes true", `${FLY_REGION == "den"}`, "true"},
		{"equal double quotes false", `${FLY_REGION == "ord"}`, "false"},
		{"not equal single quotes true", `${FLY_REGION != 'ord'}`, "true"},
		{"not equal single quotes false", `${FLY_REGION != 'den'}`, "false"},
		{"no spaces", `${FLY_REGION=="den"}`, "true"},
		{"many spaces and tabs", "${  FLY_REGION \t==   \"den\"  }", "true"},
		{"variable to variable equal", `${FLY_REGION == PRIMARY}`, "true"},
		{"variable to variable differ", `${FLY_REGION == OTHER}`, "false"},
		{"variable to variable not equal", `${FLY_REGION != OTHER}`, "true"},
		{"unset compares as empty", `${NOPE == ""}`, "true"},
		{"unset against set", `${NOPE == FLY_REGION}`, "false"},
		{"two unset are equal", `${NOPE == ALSO_NOPE}`, "true"},
		{"quoted on the left", `${"den" == FLY_REGION}`, "true"},
		{"brace inside quotes", `${FLY_REGION != "}"}`, "true"},
		{"operator inside quotes", `${FLY_REGION == "a==b"}`, "false"},
		{"in a YAML line", `candidate: ${FLY_REGION == "den"}`, "candidate: true"},
	})
}

func TestExpandEnv_DollarEscapeAndLiterals(t *testing.T) {
	runExpand(t, []expandCase{
		{"double dollar is one dollar", "token: pa$$word", "token: pa$word"},
		{"double dollar before name", "$$HOST", "$HOST"},
		{"lone dollar at end", "cost $", "cost $"},
		{"dollar before digit", "cost $5", "cost $5"},
		{"dollar before space", "a $ b", "a $ b"},
	})
}

func TestExpandEnv_MalformedLeftAsWritten(t *testing.T) {
	runExpand(t, []expandCase{
		{"empty braces", "${}", "${}"},
		{"unclosed", "${HOST", "${HOST"},
		{"unclosed on its line", "${HOST\n}", "${HOST\n}"},
		{"quote does not span lines", "${HOST == \"x\ny: \"}", "${HOST == \"x\ny: \"}"},
		{"two names", "${HOST OTHER}", "${HOST OTHER}"},
		{"unknown operator", `${HOST = "x"}`, `${HOST = "x"}`},
		{"missing right side", `${HOST ==}`, `${HOST ==}`},
		{"unterminated quote", `${HOST == "x}`, `${HOST == "x}`},
		{"quoted alone", `${"x"}`, `${"x"}`},
		{"trailing garbage", `${HOST == "x" y}`, `${HOST == "x" y}`},
		{"default syntax unsupported", "${HOST:-x}", "${HOST:-x}"},
		{"malformed then valid", "${} $HOST", "${} node1"},
	})
}

func TestExpandEnv_NilLookupUsesProcessEnv(t *testing.T) {
	t.Setenv("LITEFS_TEST_EXPAND", "yes")
	if got := ExpandEnv("${LITEFS_TEST_EXPAND == 'yes'}", nil); got != "true" {
		t.Errorf("got %q, want true", got)
	}
}
