#include <limits.h>
#include <stdlib.h>

#include <openssl/evp.h>

#include "base64.h"
#include "util.h"

int
base64_decode(const char *text, size_t len, unsigned char **out, size_t *outlen)
{
	unsigned char *buf;
	int n;

	if (len == 0 || len % 4 != 0 || len > INT_MAX)
		return -1;
	buf = xmalloc(len / 4 * 3 + 1);
	n = EVP_DecodeBlock(buf, (const unsigned char *)text, (int)len);
	if (n < 0) {
		free(buf);
		return -1;
	}

	/* EVP_DecodeBlock counts the padding as data bytes. */
	if (text[len - 1] == '=')
		n--;
	if (text[len - 2] == '=')
		n--;
	*out = buf;
	*outlen = (size_t)n;
	return 0;
}
