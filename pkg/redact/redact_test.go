package redact

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestTextHidesPiecesOfSecrets(t *testing.T) {
	const token = "figd_0123456789abcdefXYZ"
	for _, tc := range []struct {
		name, in, want string
	}{
		{"whole", "bad token " + token + " here", "bad token " + Mask + " here"},
		{"first half", "got figd_01234567 only", "got " + Mask + " only"},
		{"last nine", "tail cdefXYZ9 " + token[len(token)-9:], "tail cdefXYZ9 " + Mask},
		{"seven bytes stay", "x " + token[3:10] + " y", "x " + token[3:10] + " y"},
		{"two pieces", token[:8] + "--" + token[10:18], Mask + "--" + Mask},
		{"nothing", "all clear", "all clear"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Text(tc.in, []string{token}); got != tc.want {
				t.Errorf("Text(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestTextShortSecretOnlyWhole(t *testing.T) {
	if got := Text("a pin 4711 and 471", []string{"4711"}); got != "a pin "+Mask+" and 471" {
		t.Errorf("got %q", got)
	}
}

func TestClipOnRuneBoundary(t *testing.T) {
	s := strings.Repeat("é", 600) // 2 bytes each
	got := Clip(s, 513)
	if len(got) > 513 || !utf8.ValidString(got) || !strings.HasSuffix(got, "…") {
		t.Fatalf("Clip gave %d bytes, valid=%v", len(got), utf8.ValidString(got))
	}
	if Clip("short", 10) != "short" {
		t.Error("a short text must stay as it is")
	}
}

func TestPrintable(t *testing.T) {
	got := Printable("a\nb\r\x1b[31mc\td\x7f\u0085e\xff")
	if got != "a b  [31mc\td  e\uFFFD" {
		t.Errorf("Printable = %q", got)
	}
	if s := "plain\ttext ü"; Printable(s) != s {
		t.Error("clean text must stay as it is")
	}
}

func TestSecretsSetBoundedAndShared(t *testing.T) {
	var s Secrets
	for i := range maxSecrets + 10 {
		s.Add(strings.Repeat(string(rune('a'+i%26)), 8) + string(rune('A'+i/26)))
	}
	if n := len(s.List()); n != maxSecrets {
		t.Fatalf("set holds %d values, want %d", n, maxSecrets)
	}
	s.Add("supersecretvalue")
	if got := s.Text("leak: supersecret"); got != "leak: "+Mask {
		t.Errorf("got %q", got)
	}
	var none *Secrets
	none.Add("x")
	if none.Text("x") != "x" {
		t.Error("a nil set hides nothing")
	}
}
