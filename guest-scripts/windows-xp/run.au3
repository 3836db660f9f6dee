#NoTrayIcon
; kiosk-vm-watchdog: starts the monitors ([run] monitors in config.ini) and starts again any
; that ends. Put run.exe (or run.au3) in the Startup folder or the Run key; it starts the rest.
; Compiled: heartbeat.exe, idle-monitor.exe, process-watchdog.exe beside run.exe.
; Not compiled: AutoIt3.exe runs the .au3 files beside run.au3.
#include <Math.au3>
#include <Misc.au3>
#include "common.au3"

_KVW_Init("run")
If _Singleton("kiosk-vm-watchdog-run", 1) = 0 Then Exit 0

Global $g_iCheckMs = _KVW_ReadNumber("run", "check_seconds", 2, 1, 60) * 1000
Global $g_aNames = StringSplit(_KVW_Read("run", "monitors", "heartbeat,idle-monitor,process-watchdog"), ",")
Global $g_aPids[$g_aNames[0] + 1]
Global $g_aStarted[$g_aNames[0] + 1] ; TimerInit() of each start
Global $g_aDelayMs[$g_aNames[0] + 1] ; wait before the next start; doubles while a monitor dies young
For $i = 1 To $g_aNames[0]
	$g_aNames[$i] = StringStripWS($g_aNames[$i], 3)
	If Not FileExists(_Program($g_aNames[$i])) Then _KVW_Fatal("[run] monitors: " & _Program($g_aNames[$i]) & " does not exist")
	$g_aPids[$i] = 0
	$g_aStarted[$i] = 0
	$g_aDelayMs[$i] = 0
Next

_KVW_Log("started: " & $g_aNames[0] & " monitors")
While 1
	For $i = 1 To $g_aNames[0]
		If $g_aPids[$i] <> 0 And Not ProcessExists($g_aPids[$i]) Then
			; A monitor that ends within a minute of starting (e.g. a config error) is started
			; again after 2, 4, 8 ... up to 300 s, so the log is not flooded.
			If TimerDiff($g_aStarted[$i]) < 60000 Then
				$g_aDelayMs[$i] = _Min(_Max($g_aDelayMs[$i] * 2, 2000), 300000)
			Else
				$g_aDelayMs[$i] = 0
			EndIf
			_KVW_Log($g_aNames[$i] & " (pid " & $g_aPids[$i] & ") ended: starting it again in " & Round($g_aDelayMs[$i] / 1000) & " s")
			$g_aPids[$i] = 0
			$g_aStarted[$i] = TimerInit()
		EndIf
		If $g_aPids[$i] = 0 And ($g_aStarted[$i] = 0 Or TimerDiff($g_aStarted[$i]) >= $g_aDelayMs[$i]) Then
			$g_aPids[$i] = _Start($g_aNames[$i])
			$g_aStarted[$i] = TimerInit()
		EndIf
	Next
	Sleep($g_iCheckMs)
WEnd

; The file that is started for a monitor: its .exe when run.exe is compiled, else its .au3.
Func _Program($sName)
	If @Compiled Then Return @ScriptDir & "\" & $sName & ".exe"
	Return @ScriptDir & "\" & $sName & ".au3"
EndFunc

; Starts one monitor with the same config file; returns its pid (0 when it could not start).
Func _Start($sName)
	Local $sCommand = '"' & _Program($sName) & '" "' & $g_sKvwConfig & '"'
	If Not @Compiled Then $sCommand = '"' & @AutoItExe & '" ' & $sCommand
	Local $iPid = Run($sCommand, @ScriptDir)
	If @error Or $iPid = 0 Then
		_KVW_Log("could not start " & $sName & ": " & $sCommand)
		Return 0
	EndIf
	Return $iPid
EndFunc
