// CBLAS from Debian's libopenblas-dev (through the libblas alternative): OpenBLAS has AVX2
// kernels where Debian's FAISS build has none, so exact scans call sgemv/sgemm directly.
#include <cblas.h>
