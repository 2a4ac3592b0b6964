#ifndef FARM_CVAAPI_SHIM_H
#define FARM_CVAAPI_SHIM_H
#include <va/va.h>
#include <va/va_drm.h>
#endif
