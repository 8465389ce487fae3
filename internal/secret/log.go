package secret

import "github.com/sirupsen/logrus"

// Formatter wraps a logrus formatter so that every log line, whatever
// field or message carries a secret, is written masked.
func (m *Masker) Formatter(f logrus.Formatter) logrus.Formatter {
	return maskingFormatter{inner: f, masker: m}
}

type maskingFormatter struct {
	inner  logrus.Formatter
	masker *Masker
}

func (f maskingFormatter) Format(e *logrus.Entry) ([]byte, error) {
	b, err := f.inner.Format(e)
	if err != nil {
		return nil, err
	}
	return []byte(f.masker.String(string(b))), nil
}
