// glibc headers Swift's Glibc module leaves out: malloc.h, for the heap use INFO reports
// (mallinfo2: bytes handed out by the allocator, Redis's used_memory, distinct from RSS).
#include <malloc.h>
