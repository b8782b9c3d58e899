/*
 * Header edits that filterd returns, applied to the spool file in place
 * before the message is committed: fields inserted at the top, fields
 * removed, a prefix on the Subject: value. smtpd applies them to SMTP
 * mail, and queued to local submissions.
 */
#ifndef ESTAFETA_HEADER_EDIT_H
#define ESTAFETA_HEADER_EDIT_H

#include <stddef.h>
#include <sys/types.h>

/* The largest header section that can be edited; a larger one fails. */
#define HEADER_EDIT_MAX (1024 * 1024)

/* The Nth (1-based) field called NAME, compared without regard to case. */
struct header_removal {
	char name[64];
	unsigned index;
};

struct header_edits {
	char **fields;		/* "Name: value", LF between folded lines, no final LF */
	size_t nfields;
	struct header_removal *removals;
	size_t nremovals;
	char subject_prefix[64];	/* "" for none */
};

/* The result of header_edit_apply for a header section longer than
 * HEADER_EDIT_MAX: unlike -1, a retry would fail again. */
#define HEADER_EDIT_TOO_LARGE (-2)

/*
 * Apply EDITS to the first SIZE bytes of FD (a message with LF line
 * ends), truncate the file after the new end, and leave the file offset
 * there. Returns 0 with *NEW_SIZE set, -1 with ERR set after a read or
 * write error, or HEADER_EDIT_TOO_LARGE with ERR set, the file unchanged.
 */
int header_edit_apply(int fd, off_t size, const struct header_edits *edits, off_t *new_size,
    char *err, size_t errsize);

/* Free the fields and removals of EDITS and empty it. */
void header_edits_clear(struct header_edits *edits);

#endif
