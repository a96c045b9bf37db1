package register

import "strings"

// isCommon reports whether p is, ignoring case, one of about a hundred of
// the passwords found most often in public breach corpora.
func isCommon(p string) bool {
	switch strings.ToLower(p) {
	case
		"123456", "password", "12345678", "qwerty", "123456789", "12345", "1234", "111111", "1234567",
		"dragon", "123123", "baseball", "abc123", "football", "monkey", "letmein", "696969", "shadow",
		"master", "666666", "qwertyuiop", "123321", "mustang", "1234567890", "michael", "654321",
		"superman", "1qaz2wsx", "7777777", "121212", "000000", "qazwsx", "123qwe", "killer", "trustno1",
		"jordan", "jennifer", "zxcvbnm", "asdfgh", "hunter", "buster", "soccer", "harley", "batman",
		"andrew", "tigger", "sunshine", "iloveyou", "2000", "charlie", "robert", "thomas", "hockey",
		"ranger", "daniel", "starwars", "klaster", "112233", "george", "computer", "michelle", "jessica",
		"pepper", "1111", "zxcvbn", "555555", "11111111", "131313", "freedom", "777777", "pass",
		"maggie", "159753", "aaaaaa", "ginger", "princess", "joshua", "cheese", "amanda", "summer",
		"love", "ashley", "nicole", "chelsea", "biteme", "matthew", "access", "yankees", "987654321",
		"dallas", "austin", "thunder", "taylor", "matrix", "password1", "password123", "qwerty123",
		"welcome", "admin", "administrator", "passw0rd", "p@ssw0rd", "changeme", "secret", "login",
		"abcd1234", "qwertyui", "1q2w3e4r", "1q2w3e4r5t", "asdfghjkl", "football1", "iloveyou1",
		"00000000", "88888888", "12341234", "87654321", "q1w2e3r4", "welcome1", "letmein1", "baseball1":
		return true
	}
	return false
}
