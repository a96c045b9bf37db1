package content

import (
	"strings"
)

// A detector finds a validated identifier in text: a candidate that the
// pattern finds is reported only if its check digits hold, so that an
// order number or a phone number does not trip a card rule.
type detector func(text string) bool

// detectors are the validated detectors by config name.
var detectors = map[string]detector{
	"card_number": hasCardNumber,
	"iban":        hasIBAN,
	"us_ssn":      hasSSN,
}

// digitRuns calls f with each run of digits in text, where single spaces
// or hyphens between digits do not break a run (card numbers are written
// in groups), and the offsets in the run where its groups start and end
// (0, each separator's place, len); f returns true to stop.
func digitRuns(text string, f func(digits []byte, bounds []int) bool) bool {
	var run []byte
	var bounds []int
	flush := func() bool {
		ok := len(run) > 0 && f(run, append(bounds, len(run)))
		run, bounds = run[:0], bounds[:0]
		return ok
	}
	for i := 0; i < len(text); i++ {
		c := text[i]
		switch {
		case isDigit(c):
			if len(run) == 0 {
				if i > 0 && isAlnum(text[i-1]) {
					// inside a word (an ID such as "A1234..."): skip it
					for i < len(text) && isAlnum(text[i]) {
						i++
					}
					continue
				}
				bounds = append(bounds, 0)
			}
			run = append(run, c)
		case (c == ' ' || c == '-') && len(run) > 0 && i+1 < len(text) && isDigit(text[i+1]):
			bounds = append(bounds, len(run))
		default:
			if flush() {
				return true
			}
		}
	}
	return flush()
}

// hasCardNumber reports a payment card number: 13 to 19 digits, written
// together or in groups, in an issuer range (ISO/IEC 7812: Visa,
// Mastercard, American Express, Discover, JCB, Diners, UnionPay,
// Maestro), with a valid Luhn check digit. Neighbouring numbers ("2 x
// 4111 ...") are told apart at their group boundaries.
func hasCardNumber(text string) bool {
	return digitRuns(text, func(d []byte, bounds []int) bool {
		for a := 0; a < len(bounds); a++ {
			for b := a + 1; b < len(bounds); b++ {
				if c := d[bounds[a]:bounds[b]]; len(c) >= 13 && len(c) <= 19 && cardRange(c) && luhn(c) {
					return true
				}
			}
		}
		return false
	})
}

// cardRange reports whether d starts with a known issuer prefix and has
// a length that issuer uses.
func cardRange(d []byte) bool {
	p := func(n int) int {
		v := 0
		for _, c := range d[:n] {
			v = v*10 + int(c-'0')
		}
		return v
	}
	n := len(d)
	switch {
	case d[0] == '4': // Visa
		return n == 13 || n == 16 || n == 19
	case p(2) >= 51 && p(2) <= 55, p(4) >= 2221 && p(4) <= 2720: // Mastercard
		return n == 16
	case p(2) == 34 || p(2) == 37: // American Express
		return n == 15
	case p(4) == 6011, p(2) == 65, p(3) >= 644 && p(3) <= 649: // Discover
		return n >= 16
	case p(4) >= 3528 && p(4) <= 3589: // JCB
		return n >= 16
	case p(3) >= 300 && p(3) <= 305, p(2) == 36, p(2) == 38: // Diners Club
		return n >= 14
	case p(2) == 62: // UnionPay
		return n >= 16
	case p(2) == 50, p(2) >= 56 && p(2) <= 58, p(2) == 63, p(2) == 67: // Maestro
		return n >= 12
	}
	return false
}

// luhn reports whether the digits' Luhn (mod 10) check holds.
func luhn(d []byte) bool {
	sum := 0
	for i := len(d) - 1; i >= 0; i-- {
		v := int(d[i] - '0')
		if (len(d)-1-i)%2 == 1 {
			v *= 2
			if v > 9 {
				v -= 9
			}
		}
		sum += v
	}
	return sum%10 == 0
}

// ibanLengths are the IBAN lengths of the SEPA countries and a few
// others (the SWIFT IBAN registry); a country not listed may have 15 to
// 34 characters.
var ibanLengths = map[string]int{
	"AD": 24, "AE": 23, "AT": 20, "BE": 16, "BG": 22, "CH": 21, "CY": 28, "CZ": 24, "DE": 22, "DK": 18,
	"EE": 20, "ES": 24, "FI": 18, "FR": 27, "GB": 22, "GI": 23, "GR": 27, "HR": 21, "HU": 28, "IE": 22,
	"IL": 23, "IS": 26, "IT": 27, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MT": 31, "NL": 18,
	"NO": 15, "PL": 28, "PT": 25, "RO": 24, "SA": 24, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "TR": 26,
	"VA": 22,
}

// hasIBAN reports an IBAN: two letters, two check digits and up to 30
// letters or digits, written together or in groups of four separated by
// single spaces, of its country's length and with the ISO 7064 mod-97
// remainder 1.
func hasIBAN(text string) bool {
	up := strings.ToUpper(text)
	for i := 0; i+15 <= len(up); i++ {
		if !isUpper(up[i]) || !isUpper(up[i+1]) || !isDigit(up[i+2]) || !isDigit(up[i+3]) {
			continue
		}
		if i > 0 && isAlnum(up[i-1]) {
			continue
		}
		var cand []byte
		for j := i; j < len(up) && len(cand) < 34; j++ {
			c := up[j]
			if isAlnum(c) {
				cand = append(cand, c)
				continue
			}
			if c == ' ' && j+1 < len(up) && isAlnum(up[j+1]) && len(cand)%4 == 0 {
				continue
			}
			break
		}
		// The candidate may run into the next word: try its lengths.
		for n := len(cand); n >= 15; n-- {
			want, known := ibanLengths[string(cand[:2])]
			if known && n != want {
				continue
			}
			if mod97(cand[:n]) == 1 {
				return true
			}
		}
	}
	return false
}

// mod97 is ISO 7064 MOD 97-10 of an IBAN: the first four characters
// moved to the end, letters as 10..35.
func mod97(s []byte) int {
	r := 0
	add := func(c byte) {
		if isDigit(c) {
			r = (r*10 + int(c-'0')) % 97
			return
		}
		v := int(c-'A') + 10
		r = (r*100 + v) % 97
	}
	for _, c := range s[4:] {
		add(c)
	}
	for _, c := range s[:4] {
		add(c)
	}
	return r
}

// hasSSN reports a US social security number written AAA-GG-SSSS (or
// with spaces), outside the numbers never issued: area 000, 666 and
// 900-999, group 00, serial 0000.
func hasSSN(text string) bool {
	for i := 0; i+11 <= len(text); i++ {
		s := text[i : i+11]
		sep := s[3]
		if (sep != '-' && sep != ' ') || s[6] != sep {
			continue
		}
		if !allDigits(s[0:3]) || !allDigits(s[4:6]) || !allDigits(s[7:11]) {
			continue
		}
		if (i > 0 && isAlnum(text[i-1])) || (i+11 < len(text) && isAlnum(text[i+11])) {
			continue
		}
		area, group, serial := s[0:3], s[4:6], s[7:11]
		if area == "000" || area == "666" || area[0] == '9' || group == "00" || serial == "0000" {
			continue
		}
		return true
	}
	return false
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isUpper(c byte) bool { return c >= 'A' && c <= 'Z' }
func isAlnum(c byte) bool { return isDigit(c) || isUpper(c) || (c >= 'a' && c <= 'z') }

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}
