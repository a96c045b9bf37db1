package content

import (
	"math/rand/v2"
	"strconv"
	"testing"
)

func TestCardNumber(t *testing.T) {
	for _, tc := range []struct {
		text string
		want bool
	}{
		{"4111111111111111", true},
		{"my card is 4111 1111 1111 1111, thanks", true},
		{"4111-1111-1111-1111", true},
		{"amex 3782 822463 10005", true},
		{"mc 5555555555554444", true},
		{"mc2 2223003122003222", true},
		{"2 x 4111 1111 1111 1111", true}, // a neighbouring number
		{"4111111111111112", false},       // Luhn fails
		{"1234567812345670", false},       // Luhn holds, no issuer starts with 1
		{"order 41111111111111", false},   // 14 digits: no Visa length
		{"A4111111111111111", false},      // inside an identifier
		{"call 555-1234 at 10:30", false},
		{"", false},
	} {
		if got := hasCardNumber(tc.text); got != tc.want {
			t.Errorf("hasCardNumber(%q) = %v, want %v", tc.text, got, tc.want)
		}
	}
}

// TestCardNumberRandom: random 16-digit numbers whose Luhn check fails
// never match, whatever their prefix.
func TestCardNumberRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 10000; i++ {
		n := strconv.FormatUint(1e15+r.Uint64N(9e15), 10)
		d := []byte(n)
		if luhn(d) {
			d[15] = '0' + (d[15]-'0'+1)%10
		}
		if hasCardNumber(string(d)) {
			t.Fatalf("%s matched with a failing Luhn check", d)
		}
	}
}

func TestIBAN(t *testing.T) {
	for _, tc := range []struct {
		text string
		want bool
	}{
		{"DE89370400440532013000", true},
		{"pay to DE89 3704 0044 0532 0130 00 today", true},
		{"gb82 west 1234 5698 7654 32", true},
		{"GB82WEST12345698765432", true},
		{"FR1420041010050500013M02606", true},
		{"DE89370400440532013001", false}, // mod-97 fails
		{"DE8937040044053201300", false},  // one short for DE
		{"XX00 hello world", false},
		{"", false},
	} {
		if got := hasIBAN(tc.text); got != tc.want {
			t.Errorf("hasIBAN(%q) = %v, want %v", tc.text, got, tc.want)
		}
	}
}

func TestSSN(t *testing.T) {
	for _, tc := range []struct {
		text string
		want bool
	}{
		{"ssn 123-45-6789", true},
		{"123 45 6789", true},
		{"000-12-3456", false},
		{"666-12-3456", false},
		{"912-12-3456", false},
		{"123-00-4567", false},
		{"123-45-0000", false},
		{"123-45-67890", false},
		{"123-45 6789", false},
		{"call 555-1234", false},
	} {
		if got := hasSSN(tc.text); got != tc.want {
			t.Errorf("hasSSN(%q) = %v, want %v", tc.text, got, tc.want)
		}
	}
}
