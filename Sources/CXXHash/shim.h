#ifndef FARM_CXXHASH_SHIM_H
#define FARM_CXXHASH_SHIM_H

// xxHash (libxxhash): XXH3-128, the checksum of segment bytes on the wire and in the job store.
#include <xxhash.h>

#endif
