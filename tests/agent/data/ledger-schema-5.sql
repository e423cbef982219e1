-- A ledger at schema 5 (the A/B label of an M&V interval): the schema-4 dump migrated by that
-- release's migration, its interval labelled operator in block 1234, dumped with sqlite3's iterdump.
-- tests/agent/test_ledger_compat.py opens it with the code of today.
BEGIN TRANSACTION;
CREATE TABLE event (
        id INTEGER PRIMARY KEY,
        wall REAL NOT NULL,
        kind TEXT NOT NULL,               
        subject TEXT NOT NULL,            
        detail TEXT NOT NULL
    );
INSERT INTO "event" VALUES(1,1790000000.0,'config','','start: sha256 0');
CREATE TABLE group_totals (
        grp TEXT NOT NULL,
        part TEXT NOT NULL,               
        saved_j REAL NOT NULL,
        penalty_j REAL NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (grp, part)
    ) WITHOUT ROWID;
CREATE TABLE handback (
        drive TEXT NOT NULL,
        quantity TEXT NOT NULL,           
        operator REAL NOT NULL,           
        agent REAL,                       
        sending REAL,                     
        taken_at REAL NOT NULL,           
        PRIMARY KEY (drive, quantity)
    ) WITHOUT ROWID;
CREATE TABLE hourly (
        drive TEXT NOT NULL,
        hour INTEGER NOT NULL,            
        energy_j REAL NOT NULL DEFAULT 0,
        baseline_energy_j REAL NOT NULL DEFAULT 0,
        saved_vfd_j REAL NOT NULL DEFAULT 0,      
        saved_optimizer_j REAL NOT NULL DEFAULT 0,  
        co2_g REAL NOT NULL DEFAULT 0,            
        cost REAL NOT NULL DEFAULT 0,             
        currency TEXT NOT NULL DEFAULT '',
        covered_s REAL NOT NULL DEFAULT 0,
        gaps INTEGER NOT NULL DEFAULT 0,
        counter_s REAL NOT NULL DEFAULT 0,        
        power_s REAL NOT NULL DEFAULT 0, regenerated_j REAL NOT NULL DEFAULT 0, saved_stipulated_j REAL NOT NULL DEFAULT 0, saved_staging_j REAL NOT NULL DEFAULT 0, saved_unsplit_j REAL NOT NULL DEFAULT 0,          
        PRIMARY KEY (drive, hour)
    ) WITHOUT ROWID;
INSERT INTO "hourly" VALUES('chw-pump-1',1795946400,2.18252157183390445424e+04,8.77746594620232353876e+04,0.0,0.0,0.0,0.0,'EUR',7.00287511399983486626e+00,0,0.0,7.00287511399983486626e+00,0.0,6.59494437436841835723e+04,0.0,0.0);
INSERT INTO "hourly" VALUES('cw-pump-1',1795946400,2.11197421460506266151e+04,4.84582781339333741946e+04,0.0,0.0,0.0,0.0,'EUR',7.0026011659992946079e+00,0,0.0,7.0026011659992946079e+00,0.0,2.73385359878827584908e+04,0.0,0.0);
INSERT INTO "hourly" VALUES('supply-fan',1795946400,1.07692356044152638791e+04,7.70304654459987359592e+04,0.0,0.0,0.0,0.0,'EUR',7.0027695859998857486e+00,0,0.0,7.0027695859998857486e+00,0.0,6.62612298415834811765e+04,0.0,0.0);
CREATE TABLE mv_interval (
        grp TEXT NOT NULL,
        start REAL NOT NULL,              
        length_s REAL NOT NULL,
        mode TEXT NOT NULL,               
        energy_j REAL NOT NULL,
        covered_s REAL NOT NULL,          
        flow REAL,                        
        speed_ratio REAL,                 
        pumps_running REAL,               
        pressure_pa REAL,                 
        hour_of_week INTEGER NOT NULL, strategy TEXT, block INTEGER,    
        PRIMARY KEY (grp, start)
    ) WITHOUT ROWID;
INSERT INTO "mv_interval" VALUES('circulation',1790000000.0,3600.0,'monitor',7200000.0,3600.0,0.01,0.8,1.0,NULL,33,'operator',1234);
CREATE TABLE mv_model (
        grp TEXT NOT NULL,
        fitted_at REAL NOT NULL,
        period_start REAL NOT NULL,
        period_end REAL NOT NULL,
        interval_s REAL NOT NULL,
        model TEXT NOT NULL,              
        PRIMARY KEY (grp, fitted_at)
    ) WITHOUT ROWID;
CREATE TABLE schema_version (version INTEGER NOT NULL);
INSERT INTO "schema_version" VALUES(5);
CREATE TABLE totals (
        drive TEXT PRIMARY KEY,
        energy_j REAL NOT NULL, baseline_energy_j REAL NOT NULL,
        saved_vfd_j REAL NOT NULL, penalty_vfd_j REAL NOT NULL,
        saved_optimizer_j REAL NOT NULL, penalty_optimizer_j REAL NOT NULL,
        co2_avoided_g REAL NOT NULL, co2_penalty_g REAL NOT NULL,
        cost_saved REAL NOT NULL, cost_penalty REAL NOT NULL,
        covered_s REAL NOT NULL, gaps INTEGER NOT NULL,
        counter_s REAL NOT NULL, power_s REAL NOT NULL,
        updated_at REAL NOT NULL
    , regenerated_j REAL NOT NULL DEFAULT 0, saved_stipulated_j REAL NOT NULL DEFAULT 0, penalty_stipulated_j REAL NOT NULL DEFAULT 0);
INSERT INTO "totals" VALUES('chw-pump-1',2.18252157183390445424e+04,8.77746594620232353876e+04,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,7.00287511399983486626e+00,0,0.0,7.00287511399983486626e+00,1.79594657539257287984e+09,0.0,6.59494437436841835723e+04,0.0);
INSERT INTO "totals" VALUES('cw-pump-1',2.11197421460506266151e+04,4.84582781339333741946e+04,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,7.0026011659992946079e+00,0,0.0,7.0026011659992946079e+00,1.79594657539257287984e+09,0.0,2.73385359878827584908e+04,0.0);
INSERT INTO "totals" VALUES('supply-fan',1.07692356044152638791e+04,7.70304654459987359592e+04,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,7.0027695859998857486e+00,0,0.0,7.0027695859998857486e+00,1.79594657539257287984e+09,0.0,6.62612298415834811765e+04,0.0);
COMMIT;
