// LMDB from Debian's liblmdb-dev. Nothing of our own here: the Swift storage layer owns the logic.
#include <lmdb.h>
