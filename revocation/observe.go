package revocation

// The methods an Observer is told about.
const (
	MethodCRL  = "crl"
	MethodOCSP = "ocsp"
)

// Observer is told, for every certificate Check answers about, the
// status each method gave it: MethodCRL (configured CRLs and distribution
// points together) and MethodOCSP, each at most once per certificate, and
// only for the methods that covered it. It lets a caller count checks
// without this package knowing how; it must be cheap and safe for
// concurrent use.
type Observer func(method string, status Status)

// seen collects the status each method gave one certificate, so that a
// certificate answered in two passes (memory first, then the network) is
// reported once, with its final answers.
type seen struct{ crl, ocsp Status }

func newSeen() seen { return seen{crl: notApplicable, ocsp: notApplicable} }

// add merges one source's answer: revoked wins over good, good over
// unknown.
func (s *seen) add(method string, st Status) {
	p := &s.crl
	if method == MethodOCSP {
		p = &s.ocsp
	}
	if *p == notApplicable || rank(st) > rank(*p) {
		*p = st
	}
}

func rank(st Status) int {
	switch st {
	case Revoked:
		return 2
	case Good:
		return 1
	}
	return 0
}

// report tells o what was seen.
func (s *seen) report(o Observer) {
	if s.crl != notApplicable {
		o(MethodCRL, s.crl)
	}
	if s.ocsp != notApplicable {
		o(MethodOCSP, s.ocsp)
	}
}
