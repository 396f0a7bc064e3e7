/*
 * test_conditions.c - the pure rules of SPEC 6.1 and 6.2 (include/
 * agipd_conditions.h): memory-cell and acquisition-rate fallbacks, the
 * setupr mapping, and the check of a constant's conditions with its
 * tolerances.  The control-file reading is tested end to end by
 * tests/test_facility.py.
 */
#include <math.h>
#include <string.h>

#include "agipd_conditions.h"
#include "unit.h"

int main(void)
{
	TEST("conditions: memory-cell fallback") {
		CHECK_EQ_INT(agipd_cond_mem_cells_fallback(0), 4);
		CHECK_EQ_INT(agipd_cond_mem_cells_fallback(3), 4);
		CHECK_EQ_INT(agipd_cond_mem_cells_fallback(4), 32);
		CHECK_EQ_INT(agipd_cond_mem_cells_fallback(63), 64);
		CHECK_EQ_INT(agipd_cond_mem_cells_fallback(64), 76);
		CHECK_EQ_INT(agipd_cond_mem_cells_fallback(201), 202);
		CHECK_EQ_INT(agipd_cond_mem_cells_fallback(351), 352);
		CHECK_EQ_INT(agipd_cond_mem_cells_fallback(352), -1);
	}
	TEST("conditions: acquisition rate from the pulse spacing") {
		CHECK(agipd_cond_rate_from_spacing(1) == 4.5);
		CHECK(agipd_cond_rate_from_spacing(2) == 2.2);
		CHECK(agipd_cond_rate_from_spacing(3) == 1.5);
		CHECK(agipd_cond_rate_from_spacing(4) == 1.1);
		CHECK(agipd_cond_rate_from_spacing(5) == 0.9);
		CHECK(agipd_cond_rate_from_spacing(8) == 0.5);
		CHECK(isnan(agipd_cond_rate_from_spacing(0)));
	}
	TEST("conditions: gain setting from setupr and patternTypeIndex") {
		CHECK_EQ_INT(agipd_cond_gain_setting_from_setupr(0, 3), 0);
		CHECK_EQ_INT(agipd_cond_gain_setting_from_setupr(32, 4), 0);
		CHECK_EQ_INT(agipd_cond_gain_setting_from_setupr(8, 0), 1);
		CHECK_EQ_INT(agipd_cond_gain_setting_from_setupr(40, 4), 1);
		CHECK_EQ_INT(agipd_cond_gain_setting_from_setupr(32, 3), -1);
		CHECK_EQ_INT(agipd_cond_gain_setting_from_setupr(0, 4), -1);
		CHECK_EQ_INT(agipd_cond_gain_setting_from_setupr(16, 1), -1);
	}
	TEST("conditions: a constant's conditions against the run's") {
		struct agipd_conditions run;
		int present[AGIPD_NCOND] = { 0 };
		double v[AGIPD_NCOND] = { 0 };
		char msg[256];
		memset(&run, 0, sizeof run);
		for (int i = 0; i < AGIPD_NCOND; i++)
			run.known[i] = 1;
		run.value[AGIPD_COND_MEM_CELLS] = 352;
		run.value[AGIPD_COND_ACQ_RATE] = 1.1;
		run.value[AGIPD_COND_GAIN_SETTING] = 0;
		run.value[AGIPD_COND_GAIN_MODE] = 1;
		run.value[AGIPD_COND_INTEG_TIME] = 12;
		run.value[AGIPD_COND_BIAS] = 300;
		memcpy(v, run.value, sizeof v);
		for (int i = 0; i < AGIPD_NCOND; i++)
			present[i] = 1;
		CHECK_EQ_INT(agipd_conditions_check(&run, present, v, 1, msg, sizeof msg), 0);
		v[AGIPD_COND_BIAS] = 305;            /* within 5 V */
		v[AGIPD_COND_ACQ_RATE] = 1.15;       /* within 0.05 MHz */
		CHECK_EQ_INT(agipd_conditions_check(&run, present, v, 1, msg, sizeof msg), 0);
		v[AGIPD_COND_BIAS] = 306;
		CHECK_EQ_INT(agipd_conditions_check(&run, present, v, 1, msg, sizeof msg), -1);
		CHECK(strstr(msg, "Sensor Bias Voltage") && strstr(msg, "run 300") && strstr(msg, "constant 306"));
		v[AGIPD_COND_BIAS] = 300;
		v[AGIPD_COND_ACQ_RATE] = 2.2;
		CHECK_EQ_INT(agipd_conditions_check(&run, present, v, 1, msg, sizeof msg), -1);
		CHECK(strstr(msg, "Acquisition rate") != NULL);
		v[AGIPD_COND_ACQ_RATE] = 1.1;
		/* Gain mode: checked for dark constants only */
		v[AGIPD_COND_GAIN_MODE] = 0;
		CHECK_EQ_INT(agipd_conditions_check(&run, present, v, 1, msg, sizeof msg), -1);
		CHECK(strstr(msg, "Gain mode") != NULL);
		CHECK_EQ_INT(agipd_conditions_check(&run, present, v, 0, msg, sizeof msg), 0);
		/* unknown run conditions and absent attributes are not checked */
		run.known[AGIPD_COND_GAIN_MODE] = 0;
		CHECK_EQ_INT(agipd_conditions_check(&run, present, v, 1, msg, sizeof msg), 0);
		v[AGIPD_COND_MEM_CELLS] = 64;
		present[AGIPD_COND_MEM_CELLS] = 0;
		CHECK_EQ_INT(agipd_conditions_check(&run, present, v, 1, msg, sizeof msg), 0);
		present[AGIPD_COND_MEM_CELLS] = 1;
		CHECK_EQ_INT(agipd_conditions_check(&run, present, v, 1, msg, sizeof msg), -1);
		CHECK(strstr(msg, "Memory cells") && strstr(msg, "run 352") && strstr(msg, "constant 64"));
		/* the gain mode used */
		CHECK_EQ_INT(agipd_conditions_gain_mode(&run), AGIPD_GAIN_ADAPTIVE);
		run.known[AGIPD_COND_GAIN_MODE] = 1;
		run.value[AGIPD_COND_GAIN_MODE] = 3;
		CHECK_EQ_INT(agipd_conditions_gain_mode(&run), AGIPD_GAIN_FIXED_LOW);
	}
	UNIT_EXIT();
}
